"""harness.floor: the floor sum from a pytest-benchmark JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness import floor


def _bench(primitive: str, median_s: float, *, method: str = "direct", in_floor: bool = True,
           teardown: bool = False, min_s: float | None = None) -> dict:
    stats = {"median": median_s, "mean": median_s, **({"min": min_s} if min_s is not None else {})}
    return {"name": f"test_{primitive}", "stats": stats,
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
    # cgroup_create overlaps the child's path: it adds nothing while the path is longer
    assert f["total"] == pytest.approx(1.0 + 0.7)
    assert f["total_with_teardown"] == pytest.approx(1.7 + 0.3)
    assert floor.informational_ms(path)["domain_xml_render"] == pytest.approx(0.2)
    # a directory means its newest JSON
    assert floor.floor_ms(tmp_path) == f


def test_floor_is_a_critical_path_of_fastest_rounds(tmp_path: Path) -> None:
    path = _write(tmp_path, [
        _bench("roundtrip", 0.0001, method="baseline", in_floor=False, min_s=0.00005),
        _bench("fork_exec_ready", 0.0005, min_s=0.0004),
        _bench("unshare_net", 0.0015, method="worker", min_s=0.00105),
        _bench("mount_plan", 0.0025, method="worker", min_s=0.002),  # a prepared root avoids it
        _bench("cgroup_place", 0.009, min_s=0.005),  # a cold migration: avoided by joining from inside
        _bench("cgroup_place_back_to_back", 0.0013, in_floor=False, min_s=0.0003),  # the warm join
        _bench("cgroup_create", 0.003, min_s=0.002),  # overlaps, and here longer than the path
    ])
    f = floor.floor_ms(path)
    assert f["unshare_net"] == pytest.approx(1.0) and f["mount_plan"] == pytest.approx(1.95)
    path_ms = 0.4 + 1.0 + 0.3
    assert f["total"] == pytest.approx(max(path_ms, 2.0))


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


def test_isobench_floor_prints_one_primitive_a_line_totals_last(tmp_path: Path, capsys) -> None:
    from harness import cli

    path = _write(tmp_path, [_bench("fork_exec_ready", 0.002), _bench("unshare_net", 0.001, method="worker"),
                             _bench("mount_plan", 0.003, method="worker")])
    assert cli.main(["floor", str(path)]) == 0
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert names[:3] == ["mount_plan", "fork_exec_ready", "unshare_net"]  # the largest first
    assert set(names[3:]) == {"total", "total_with_teardown"}
    assert cli.main(["floor", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("isobench floor: ") and err.count("\n") == 1


def test_a_floor_above_the_median_is_reported_invalid(tmp_path: Path) -> None:
    """A floor a measured launch beats is no floor: the report says so instead of a ratio below 1."""
    from harness.report import findings, model, tables
    from harness.results import RunWriter, Sample

    w = RunWriter(tmp_path, {"host": {}, "scenario": {"name": "t"}, "backends": {"container": {}}}, "run-floor")
    for i, v in enumerate([5.0, 5.2, 4.9, 5.1, 5.0, 5.3]):
        w.add(Sample("container", "noop", "startup", "launch_to_ready", v, "ms", repetition=i, case="startup/noop"))
    w.add(Sample("container", "noop", "startup", "floor_total", 6.0, "ms", case="startup/noop"))
    w.finish("completed")
    data = model.load([w.dir])
    fl = tables.floor_ratios(data)
    assert fl.iloc[0]["invalid"].startswith("floor invalid")
    shown = tables.display_ratios(fl)
    assert shown.iloc[0]["ratio"].startswith("floor invalid")
    text = findings.plain(findings.findings(data))
    assert "the floor is invalid" in text and "0.8" not in text
