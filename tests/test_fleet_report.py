"""One report across a fleet's hosts, and compare with a fleet on each side.

The fleets are made the way ``isobench fleet run`` leaves them: each host's run written through
the real ``RunWriter`` (``tests.synth``), labelled by ``harness.fleet.collect.annotate`` and listed
in a ``fleet.json`` by ``harness.fleet.manifest`` — then read by the real report and compare.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from harness import report
from harness.commands import compare as compare_command
from harness.errors import UserError
from harness.fleet import collect, manifest
from harness.fleet.inventory import Host
from harness.report import hosts, model
from harness.results import MANIFEST
from tests import synth

MEAS = ("startup", "memory")
#: host -> (kernel, cgroup version, an emulated guest?)
LAB = {"alpha": ("6.1.0-57-amd64", 1, False), "beta": ("6.12.118+deb12-amd64", 2, True)}


def make_fleet(results: Path, fleet_id: str, *, seed: int = 0, slower: str | None = None,
               failed: tuple[str, ...] = ()) -> Path:
    """A fleet directory as ``fleet run`` leaves it; ``slower``: that host's container starts 15 % slower."""
    d = manifest.fleet_dir(results, fleet_id)
    d.mkdir(parents=True)
    data = manifest.new(fleet_id, inventory="lab.yml", scenario="scenario.toml")
    data["project"] = {"commit": "f" * 40, "dirty": False}
    for i, (name, (kernel, cgroup, guest)) in enumerate(LAB.items()):
        e = manifest.host_entry(data, name, dir=name, cleanup_id=f"fleet-{fleet_id}-{name}")
        if name in failed:
            e.update(status="failed", step="run", reason="isobench: error: something")
            continue
        scale = ((lambda b, m, k: 1.15 if b == "container" and k == "launch_to_ready" else 1.0)
                 if name == slower else None)
        run = synth.make_run(results / "tmp", hostname=f"machine-{name}", kernel=kernel, measurements=MEAS,
                             backends=("bare", "container"), reps=30, seed=seed + i, scale=scale,
                             run_id=f"fleet-{fleet_id}-{name}-a1")
        m = json.loads((run / MANIFEST).read_text())
        m["host"]["cgroup"] = {"version": cgroup}
        m["host"]["loadavg"] = [0.5 + i, 0.4, 0.3]
        (run / MANIFEST).write_text(json.dumps(m))
        run.rename(d / name)
        facts = {"isobench_guest": {"accel": "tcg", "kernel_label": kernel[:4]}} if guest else {}
        collect.annotate(d / name, Host(name, "127.0.0.1", "ssh", 22, "root", facts), fleet_id, data["project"])
        e.update(status="completed", run_id=f"fleet-{fleet_id}-{name}-a1")
    manifest.write(d, data)
    return d


@pytest.fixture(scope="module")
def fleets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    r = tmp_path_factory.mktemp("fleets") / "results"
    return {"a": make_fleet(r, "20261207-100000-aaaa", seed=1),
            "b": make_fleet(r, "20261207-110000-bbbb", seed=11, slower="beta"),
            "half": make_fleet(r, "20261207-120000-cccc", seed=21, failed=("beta",)),
            "none": make_fleet(r, "20261207-130000-dddd", failed=("alpha", "beta"))}


def test_a_fleet_directory_stands_for_its_hosts_runs_split_by_host(fleets):
    data = model.load([fleets["a"]])
    assert [r.hostname for r in data.runs] == ["alpha", "beta"]  # the inventory's names
    assert data.split == "host"
    assert {"bare @ alpha", "container @ alpha"} <= set(data.rows["series"])
    assert any(s.startswith("bare (TCG, emulated) @ beta") for s in data.rows["series"])
    assert all(r.host["commit"] == "f" * 40 for r in data.runs)  # the commit the controller sent
    half = model.load([fleets["half"]])
    assert [r.hostname for r in half.runs] == ["alpha"]  # a failed host has no run to show


def test_the_hosts_finding_names_each_hosts_facets(fleets):
    data = model.load([fleets["a"]])
    f = hosts.finding(data)
    assert f is not None and f.title.startswith("Hosts")
    alpha, beta = f.lines
    assert alpha.startswith("alpha: Synthetic CPU @ 2.0GHz, 2 cores · kernel 6.1.0-57-amd64 · cgroup v1")
    assert "load 0.5 at the start" in alpha
    assert beta.startswith("beta: ") and "kernel 6.12.118+deb12-amd64 · cgroup v2" in beta
    assert "this host is an emulated guest (TCG)" in beta and "load 1.5 at the start" in beta
    single = model.load([fleets["half"]])
    assert hosts.finding(single) is None and hosts.section(single, Path("unused")) is None


def test_the_cross_host_table_has_a_row_per_host_and_ratios_on_the_same_host(fleets):
    data = model.load([fleets["a"]])
    (h, rows), *_ = hosts.headlines(data)
    t = hosts.table(rows, data)
    assert list(t["host"]) == ["alpha", "beta (emulated, TCG)"]
    assert list(t["kernel"]) == ["6.1.0-57-amd64", "6.12.118+deb12-amd64"]
    assert list(t["cgroup"]) == ["v1", "v2"]
    assert all("(n=30)" in v for v in t["bare"]) and all("× bare" in v for v in t["container / bare"])
    per_host = {(r.backend, r.split): r for r in rows}
    assert per_host[("container", "alpha")].ratio is not None  # to bare *on alpha*


def test_report_of_a_fleet_writes_findings_tables_and_charts_faceted_by_host(fleets, tmp_path):
    out = report.build([fleets["a"]], tmp_path / "rep")
    md = (out / "report.md").read_text()
    findings_part = md.split("## Findings", 1)[1].split("## ", 1)[0]
    for kernel, cg in (("6.1.0-57-amd64", "cgroup v1"), ("6.12.118+deb12-amd64", "cgroup v2")):
        assert f"kernel {kernel} · {cg}" in findings_part
    assert "## Across hosts" in md and md.index("## Across hosts") < md.index("## Startup latency")
    assert (out / "charts" / "hosts_startup.png").stat().st_size > 0
    assert (out / "charts" / "hosts_memory.png").stat().st_size > 0
    assert (out / "tables" / "hosts_startup.csv").read_text().startswith("host,kernel,cgroup,bare,")
    assert "timed inside an emulated (TCG) guest" not in md  # that note is drawn in the chart only


def test_a_fleet_without_results_is_one_line(fleets):
    with pytest.raises(UserError, match="no host of this fleet has results yet"):
        model.load([fleets["none"]])


def _compare_args(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    compare_command.add_arguments(p)
    return p.parse_args([*argv, "--bootstraps", "499"])


def test_compare_takes_a_fleet_on_each_side_host_by_host(fleets, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert compare_command.main(_compare_args(str(fleets["a"]), str(fleets["b"]))) == 1
    out = capsys.readouterr().out
    regressed = [ln for ln in out.splitlines() if "**regression**" in ln]
    assert regressed and all(ln.startswith("| container @ beta") and "launch_to_ready" in ln for ln in regressed)
    assert "| container @ alpha" in out  # compared too, not regressed
    loaded = [compare_command._load(str(fleets[k])) for k in ("a", "b")]
    assert [len(dfs) for dfs, _ in loaded] == [2, 2]


def test_compare_refuses_a_fleet_against_a_run(fleets, capsys):
    assert compare_command.main(_compare_args(str(fleets["a"]), str(fleets["b"] / "alpha"))) == 2
    assert "a fleet compares with a fleet, host by host" in capsys.readouterr().err
    # a host's own run directory is a run: it compares with a run as any other, without hosts
    assert compare_command.main(_compare_args(str(fleets["a"] / "alpha"), str(fleets["b"] / "alpha"))) in (0, 1)
    out = capsys.readouterr().out
    assert "| container |" in out and " @ " not in out
