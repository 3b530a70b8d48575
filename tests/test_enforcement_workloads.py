"""Enforcement workloads prove they worked: a failed workload is a failed sample, never an ok row,
and every backend runs them in the same writable directory whatever the harness's cwd."""

from __future__ import annotations

import dataclasses
import subprocess
import tomllib
from pathlib import Path

import pytest

from harness import runner, scenario
from harness.results import load
from runtimes import workloads

SCENARIO = """
[scenario]
name = "enforcement-workloads"
backends = ["bare", "container"]
repetitions = 1
warmups = 0
timeout = 30

[[experiment]]
measurement = "cpu_quota"
seconds = 2
grid = { quota = [0.5], threads = [2], period_ms = [100] }

[[experiment]]
measurement = "mem_limit"
seconds = 1
grid = { limit_mib = [64], mib = [16, 128] }

[[experiment]]
measurement = "pids_limit"
seconds = 1
grid = { limit = [8], count = [4, 16] }
"""


def _run(tmp_path: Path) -> list[dict]:
    sc = scenario.parse(tomllib.loads(SCENARIO), "test", SCENARIO)
    run_dir = runner.run(sc, tmp_path / "results", progress=False)
    df = load(run_dir)
    return df.to_dict("records")


def test_every_workload_enters_the_same_writable_directory() -> None:
    for name in ("cpu", "mem", "pids"):
        script = workloads.Workload(name).script()
        assert script.startswith(f"cd {workloads.WORKDIR} || exit 96; ")  # before the ready marker
    assert "status=" in workloads.Workload("cpu").script()  # the status is reported, not assumed


@pytest.mark.privileged
@pytest.mark.slow
def test_a_failing_workload_never_yields_an_ok_row(tmp_path, monkeypatch, no_leftovers) -> None:
    # stress-ng aborting at start as it did in a read-only cwd ("temp-path must be readable and
    # writeable"): every cpu and mem sample must fail, with the reason and the log's path
    for name in ("cpu", "mem"):
        orig = workloads.CATALOG[name]

        def broken(*a: object, _orig: workloads.WorkloadDef = orig, **kw: object) -> str:
            return _orig.script(*a, **kw).replace("--quiet", "--quiet --temp-path /nonexistent-isobench")

        monkeypatch.setitem(workloads.CATALOG, name, dataclasses.replace(orig, script=broken))
    rows = _run(tmp_path)
    stressed = [r for r in rows if r["measurement"] in ("cpu_quota", "mem_limit")]
    assert stressed and all(r["status"] == "failed" for r in stressed), \
        [(r["backend"], r["measurement"], r["metric"], r["value"]) for r in stressed if r["status"] == "ok"]
    errors = {r["error"] for r in stressed}
    assert all(("exited before" in e or "failed" in e) and "log: " in e for e in errors), errors
    assert any("exit status" in e and "status 0" not in e for e in errors), errors
    # the pids workload needs no stress-ng: it still measures
    assert {r["status"] for r in rows if r["measurement"] == "pids_limit"} == {"ok"}


@pytest.fixture
def read_only_dir(tmp_path: Path):
    """A read-only bind mount, as a read-only checkout is (root may write anything else)."""
    d = tmp_path / "isobench-ro-checkout"
    d.mkdir()
    subprocess.run(["mount", "--bind", "-o", "ro", str(d), str(d)], check=True)
    try:
        yield d
    finally:
        subprocess.run(["umount", str(d)], check=True)


@pytest.mark.privileged
@pytest.mark.slow
def test_a_read_only_cwd_measures_correctly(tmp_path, read_only_dir, monkeypatch, no_leftovers) -> None:
    # stress-ng aborts in a read-only cwd; the harness's cwd must not be the workload's
    monkeypatch.chdir(read_only_dir)
    rows = _run(tmp_path)
    assert rows and all(r["status"] == "ok" for r in rows), [r["error"] for r in rows if r["status"] != "ok"]
    by = {(r["backend"], r["metric"], r["param_mib"] if r["measurement"] == "mem_limit" else None): r["value"]
          for r in rows}
    for b in ("bare", "container"):
        assert by[(b, "cpu_quota_applied", None)] == 0.5 and by[(b, "nr_periods", None)] > 5
        assert by[(b, "mem_peak", 16)] >= 16 and by[(b, "oom_killed", 16)] == 0
        assert by[(b, "oom_killed", 128)] == 1


def test_a_guest_applies_the_limits_in_its_own_cgroup() -> None:
    argv = workloads.Workload("pids", {"count": 4}).argv()
    assert workloads.in_guest_cgroup(argv, None, None) == argv  # nothing to apply: as on a host
    script = workloads.in_guest_cgroup(argv, 64, 16)[3]
    g = workloads.GUEST_CGROUP
    assert f"echo {64 << 20} > {g}/memory.max" in script and f"echo 16 > {g}/pids.max" in script
    # a limit that cannot be applied stops the run before the workload's ready line
    assert "|| { echo 'isobench: cannot apply the limits in the guest cgroup' >&2; exit 97; }" in script
    # the workload joins the cgroup itself (the wrapper stays outside: counts match a host's)
    assert f"echo $$ > {g}/cgroup.procs && exec" in script
    # the guest's own counters come back on the marker channel
    for key in ("guest_cg_mem_$k", "guest_cg_mem_peak", "guest_cg_pids_max"):
        assert key in script
