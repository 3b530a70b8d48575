"""cgroup v1 without a v1 memory controller (issue 25 item 5): memory limits on the unified hierarchy.

Debian's 6.12 kernel is built without CONFIG_MEMCG_V1: booted in hybrid v1 mode (``isobench
matrix``'s v1 cell: v1 hierarchies for cpu, pids and the rest, cgroup2 at ``unified``) its
``memory`` hierarchy does not mount.  The harness then puts each instance's memory limit on the
unified hierarchy (``memory.max``) and everything else on v1, instead of refusing every sample
of the cell.  This boots that cell (TCG here: a minute or two) and runs a memory-limit and a
startup sample on bare and container inside it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness import results
from harness.matrix import accel, cells, kernels

pytestmark = [pytest.mark.vm, pytest.mark.privileged, pytest.mark.slow]

SCENARIO = """[scenario]
name = "v1-nomemcg"
backends = ["bare", "container"]
warmups = 0
repetitions = 1

[[experiment]]
measurement = "mem_limit"
seconds = 1
grid = { mib = [48], limit_mib = [24] }

[[experiment]]
measurement = "startup"
workloads = ["noop"]
"""


def test_memory_limits_go_to_the_unified_hierarchy_when_v1_has_no_memory(tmp_path: Path) -> None:
    kernel = kernels.resolve("6.12")
    verdict = accel.verdict(kernel.image)
    scenario = tmp_path / "v1-nomemcg.toml"
    scenario.write_text(SCENARIO)
    spec = cells.CellSpec(kernel, "v1", verdict.accel, verdict.reason, cpus=2, memory_mib=1024)
    matrix_id = f"t{os.getpid()}"
    res = cells.run_cell(spec, scenario, tmp_path, matrix_id, None, 900.0, {})
    assert "v1 memory: not available" in res.cgroup_notes, res.cgroup_notes  # the premise: no v1 memory
    assert res.status == "completed", f"{res.reason}; console: {tmp_path / res.console_log}"
    run_dir = tmp_path / str(res.run_dir)
    cg = results.read_manifest(run_dir)["host"]["cgroup"]
    assert cg["version"] == 1 and "memory" not in cg["controllers"], cg
    assert "unified hierarchy" in cg.get("memory", ""), cg
    rows = results.read_samples(run_dir)
    assert rows and all(r["status"] == "ok" for r in rows), [r.get("error") for r in rows if r["status"] != "ok"]
    # the limit held where the v1 hierarchy could not hold it: the workload was OOM-killed at 24 MiB
    oom = {r["backend"]: r["value"] for r in rows if r["metric"] == "oom_killed"}
    assert oom == {"bare": 1.0, "container": 1.0}, oom
    peaks = [r["value"] for r in rows if r["metric"] == "mem_peak"]
    assert peaks and all(p <= 24.5 for p in peaks), peaks
