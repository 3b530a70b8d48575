"""The throughput measurement through the whole harness: scenario, runner, rows, report.

bare and oci:crun, one repetition each, the kernel and storage families for a second: every
counted tool run is a row in its tool's unit; crun, asked to write into its (read-only) root,
gets failed storage rows that say why, while its kernel rows count; the report has the
throughput section, its ratio figure and a findings line per family; nothing is left behind.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from harness import report, runner, scenario
from runtimes import netlab
from runtimes.throughput import catalog, scratch

SCENARIO = """
[scenario]
name = "throughput-test"
backends = ["bare", "oci:crun"]
repetitions = 1
warmups = 0
timeout = 120

[[experiment]]
measurement = "throughput"
workloads = ["throughput"]
seconds = 1
cpus = 1
params = { cpu = 0, memory = 0, network = 0, size_mib = 16 }
grid = { layer = [1] }
"""
KERNEL = [b.name for b in catalog.BENCHES if b.family == "kernel"]
STORAGE = [b.name for b in catalog.BENCHES if b.family == "storage"]


def test_scenario_keys_are_checked() -> None:
    bad = SCENARIO.replace("cpus = 1", "cpus = -1")
    with pytest.raises(scenario.ScenarioError, match="cpus"):
        scenario.parse(tomllib.loads(bad), "t.toml")
    with pytest.raises(scenario.ScenarioError, match="instances"):
        scenario.parse(tomllib.loads(SCENARIO.replace("layer = [1]", "instances = [0]")), "t.toml")
    case = scenario.parse(tomllib.loads(SCENARIO), "t.toml").cases[0]
    assert case.options == {"cpus": 1} and case.params == {"layer": 1}


@pytest.mark.privileged
@pytest.mark.slow
def test_a_run_gives_rows_failed_rows_with_reasons_and_a_report(tmp_path: Path) -> None:
    sc = scenario.parse(tomllib.loads(SCENARIO), "throughput-test.toml", SCENARIO)
    run_dir = runner.run(sc, tmp_path / "results", progress=False)
    rows = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    by = {(r["backend"], r["metric"]): r for r in rows}
    for name in KERNEL + STORAGE:
        r = by["bare", f"tp_{name}"]
        assert r["status"] == "ok" and r["value"] > 0 and r["unit"] == catalog.bench(name).unit
    assert {by["bare", f"tp_{n}"]["params"]["target"] for n in STORAGE} == {"host"}
    for name in KERNEL:
        assert by["oci:crun", f"tp_{name}"]["status"] == "ok"
    for name in STORAGE:  # crun's root is read-only: fio says so, and the row says fio said so
        r = by["oci:crun", f"tp_{name}"]
        assert r["status"] == "failed" and r["value"] is None and "Read-only file system" in r["error"]
        assert r["params"]["target"] == "layer"
    out = report.build([run_dir], tmp_path / "report")
    md = (out / "report.md").read_text()
    assert "## Throughput: what isolation costs a running workload" in md
    assert "Kernel paths — oci:crun: syscall" in md and "Felter 2014 beside ours" in md
    assert (out / "charts" / "throughput_ratios.png").exists()
    run_id = run_dir.name
    assert list(netlab.ours(run_id)) == [] and not list(scratch.root().glob(f"isobench-{run_id}-*"))
