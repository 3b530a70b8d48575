"""benchmarks/attach_latency.py and tools/favordynmods_ab.py: the favordynmods A/B's two halves.

The measurement needs a cgroup v2 tree: it runs in CI's v2 guest (``v2host``, see
tests/test_matrix_guest.py); on the v1 host it must refuse in one line.  The summary is
pure logic.  (The A/B itself boots two kernels: ``python -m tools.favordynmods_ab``, stored in
docs/runs/favordynmods-6.12-tcg.)
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import attach_latency
from runtimes import cgroups
from tests.conftest import require
from tools import favordynmods_ab


@pytest.mark.v2host
@pytest.mark.privileged
def test_it_times_a_cold_and_a_hot_migration_and_a_clone_into_the_cgroup_and_leaves_nothing() -> None:
    top = attach_latency.own_cgroup()
    samples = attach_latency.measure(reps=3, gap=0.0)
    assert {k: len(v) for k, v in samples.items()} == {"migrate_cold": 3, "migrate_hot": 3, "clone_into": 3}
    assert all(v > 0 for values in samples.values() for v in values)
    assert not list(top.glob("isobench-attach-*"))


@pytest.mark.privileged
def test_on_a_v1_host_it_refuses_in_one_line(tmp_path, capsys, monkeypatch) -> None:
    require(cgroups.version() == 1, "a v1 or hybrid host (CI's)")
    monkeypatch.setattr("sys.argv", ["attach_latency", "--out", str(tmp_path / "x.json")])
    with pytest.raises(SystemExit) as e:
        attach_latency.main()
    assert "not a cgroup v2 tree" in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "x.json").exists()


def test_the_summary_pools_the_boots_of_a_mode_with_distribution_free_intervals(tmp_path: Path) -> None:
    def boot(name: str, cold_ms: float, on: bool) -> Path:
        p = tmp_path / name
        ns = {"migrate_cold": [int((cold_ms + i / 10) * 1e6) for i in range(10)],
              "migrate_hot": [500_000] * 10, "clone_into": [200_000] * 10}
        p.write_text(json.dumps({"kernel": "6.12.1", "favordynmods": {"favordynmods": on}, "samples_ns": ns}))
        return p

    table = favordynmods_ab.summarise({"off": [boot("off-0", 15, False), boot("off-1", 16, False)],
                                       "on": [boot("on-0", 1.5, True), boot("on-1", 1.5, True)]})
    off, on = table["off"], table["on"]
    assert off["favordynmods"] == [False, False] and on["favordynmods"] == [True, True]
    cold = off["migrate_cold"]
    assert isinstance(cold, dict) and cold["n"] == 20 and cold["median_ms"] == pytest.approx(15.7, abs=0.3)
    lo, hi = cold["ci95_ms"]
    assert lo < cold["median_ms"] < hi
    assert on["migrate_hot"] == {"n": 20, "median_ms": 0.5, "ci95_ms": [0.5, 0.5]}
