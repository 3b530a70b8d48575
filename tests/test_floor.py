"""harness.floor: the floor sum from a pytest-benchmark JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness import floor


def _bench(primitive: str, median_s: float, *, method: str = "direct", in_floor: bool = True,
           teardown: bool = False) -> dict:
    return {"name": f"test_{primitive}", "stats": {"median": median_s, "mean": median_s},
            "extra_info": {"floor": in_floor, "primitive": primitive, "method": method, "teardown": teardown}}


def _write(tmp_path: Path, benches: list[dict], name: str = "0001_x.json") -> Path:
    p = tmp_path / "Linux-CPython-3.11-64bit" / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps({"machine_info": {}, "benchmarks": benches}))
    return p


def test_floor_sums_launch_primitives_and_subtracts_the_roundtrip(tmp_path: Path) -> None:
    path = _write(tmp_path, [
        _bench("roundtrip", 0.000050, method="baseline", in_floor=False),
        _bench("fork_exec_ready", 0.001),
        _bench("unshare_net", 0.000750, method="worker"),
        _bench("unshare_uts", 0.000020, method="worker"),  # below the round trip: clamped to 0
        _bench("cgroup_create", 0.0002, in_floor=False),  # v2 on a v1 host: informational
        _bench("cgroup_create", 0.0001),
        _bench("cgroup_remove", 0.0003, teardown=True),
        _bench("domain_xml_render", 0.0002, in_floor=False),
        {"name": "test_other", "stats": {"median": 1.0}},  # not ours: ignored
    ])
    f = floor.floor_ms(path)
    assert f["fork_exec_ready"] == pytest.approx(1.0)
    assert f["unshare_net"] == pytest.approx(0.7)
    assert f["unshare_uts"] == 0.0
    assert f["cgroup_create"] == pytest.approx(0.1)
    assert "domain_xml_render" not in f and "roundtrip" not in f
    assert f["total"] == pytest.approx(1.0 + 0.7 + 0.1)
    assert f["total_with_teardown"] == pytest.approx(1.8 + 0.3)
    assert floor.informational_ms(path)["domain_xml_render"] == pytest.approx(0.2)
    # a directory means its newest JSON
    assert floor.floor_ms(tmp_path) == f


def test_floor_samples_are_report_rows(tmp_path: Path) -> None:
    path = _write(tmp_path, [_bench("fork_exec_ready", 0.002)])
    rows = floor.samples(path)
    assert [r.metric for r in rows] == ["floor_total"] and rows[0].value == pytest.approx(2.0)
    rows = floor.samples(path, per_primitive=True)
    assert {r.metric for r in rows} == {"floor_fork_exec_ready", "floor_total"}
    assert all(r.backend == "container" and r.unit == "ms" and r.workload == "noop" for r in rows)


def test_floor_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(floor.FloorError, match="no pytest-benchmark JSON"):
        floor.floor_ms(tmp_path)
    bad = tmp_path / "x.json"
    bad.write_text("{}")
    with pytest.raises(floor.FloorError, match="not a pytest-benchmark result"):
        floor.floor_ms(bad)
    bad.write_text(json.dumps({"benchmarks": [{"name": "t", "stats": {"median": 1}}]}))
    with pytest.raises(floor.FloorError, match="no floor benchmarks"):
        floor.floor_ms(bad)
