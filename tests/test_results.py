"""The results store: flushed per sample, versioned manifest, interrupted runs readable."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness import results
from harness.results import RunWriter, Sample
from tests.conftest import isobench_cgroups


def _sample(i: int, **kw) -> Sample:
    base = dict(backend="bare", workload="noop", measurement="startup", metric="launch_to_ready",
                value=1.0 + i, unit="ms", repetition=i, case="startup/noop")
    base.update(kw)
    return Sample(**base)


def test_writer_and_loader_roundtrip(tmp_path: Path) -> None:
    w = RunWriter(tmp_path, {"host": {"hostname": "h1", "kernel": "6.1", "cgroup": {"version": 1}},
                             "scenario": {"name": "t"}})
    w.add(_sample(0, warmup=True))
    w.add(_sample(1, params={"quota": 0.5, "threads": 2}))
    w.add(_sample(2, status="failed", value=None, error="boom"))
    w.finish("completed")
    m = results.read_manifest(w.dir)
    assert m["schema"] == results.SCHEMA and m["schema_version"] == results.SCHEMA_VERSION
    assert m["status"] == "completed" and m["samples"] == {"ok": 2, "failed": 1}
    df = results.load(w.dir)
    assert list(df["repetition"]) == [0, 1, 2]
    assert df.loc[1, "param_quota"] == 0.5 and df.loc[1, "param_threads"] == 2
    assert bool(df.loc[0, "warmup"]) is True
    assert df.loc[2, "status"] == "failed" and df.loc[2, "error"] == "boom"
    assert set(df["host"]) == {"h1"} and set(df["kernel"]) == {"6.1"}


def test_a_run_whose_writer_died_reads_as_interrupted(tmp_path: Path) -> None:
    w = RunWriter(tmp_path, {"host": {}, "scenario": {"name": "t"}})
    w.add(_sample(0))
    assert results.read_manifest(w.dir)["status"] == "running"  # we are alive
    manifest = json.loads((w.dir / results.MANIFEST).read_text())
    manifest["writer"]["pid"] = 2**22 + 1  # no such process
    (w.dir / results.MANIFEST).write_text(json.dumps(manifest))
    assert results.read_manifest(w.dir)["status"] == "interrupted"


def test_a_line_cut_by_a_kill_is_dropped(tmp_path: Path) -> None:
    w = RunWriter(tmp_path, {"host": {}, "scenario": {"name": "t"}})
    w.add(_sample(0))
    with open(w.dir / results.SAMPLES, "a") as fh:
        fh.write('{"run_id": "x", "metr')
    assert len(results.read_samples(w.dir)) == 1


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    w = RunWriter(tmp_path, {"host": {}})
    w.finish("completed")
    m = json.loads((w.dir / results.MANIFEST).read_text())
    m["schema_version"] = results.SCHEMA_VERSION + 1
    (w.dir / results.MANIFEST).write_text(json.dumps(m))
    with pytest.raises(results.ResultsError, match="newer"):
        results.read_manifest(w.dir)


# long enough (minutes) that the run cannot end by itself before the test's signal lands
SLOW_SCENARIO = """
[scenario]
backends = ["bare"]
[[experiment]]
measurement = "startup"
workloads = ["noop"]
repetitions = 100000
warmups = 1
[[experiment]]
measurement = "pids_limit"
grid = { limit = [8], count = [16] }
"""


@pytest.mark.privileged
def test_sigkill_mid_run_keeps_samples_and_manifest(tmp_path: Path) -> None:
    scen = tmp_path / "slow.toml"
    scen.write_text(SLOW_SCENARIO)
    proc = subprocess.Popen([sys.executable, "-m", "harness", "run", str(scen), "--results", str(tmp_path),
                             "--run-id", "killed", "--no-progress"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    samples = tmp_path / "killed" / results.SAMPLES
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if samples.exists() and samples.read_text().count("\n") >= 20:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    manifest = results.read_manifest(tmp_path / "killed")
    assert manifest["status"] == "interrupted"
    df = results.load(tmp_path / "killed")
    assert len(df) >= 20
    assert set(df["metric"]) >= {"launch_to_ready"}
    assert df["value"].notna().all()
    # whatever the killed run left is found by its run id and removed
    out = subprocess.run([sys.executable, "-m", "harness", "cleanup", "--run-id", "killed"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert not [c for c in isobench_cgroups() if "killed" in c]


@pytest.mark.privileged
def test_sigterm_ends_the_run_as_interrupted(tmp_path: Path) -> None:
    scen = tmp_path / "slow.toml"
    scen.write_text(SLOW_SCENARIO)
    proc = subprocess.Popen([sys.executable, "-m", "harness", "run", str(scen), "--results", str(tmp_path),
                             "--run-id", "termed", "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    samples = tmp_path / "termed" / results.SAMPLES
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (samples.exists() and samples.read_text().count("\n") >= 10):
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    try:
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, f"stdout: {out[-2000:]}\nstderr: {err}"
    m = results.read_manifest(tmp_path / "termed")
    assert m["status"] == "interrupted" and m["ended"] is not None
    assert m["samples"]["ok"] >= 10
