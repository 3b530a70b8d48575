"""isobench compare: a synthetic 20 % regression fails the gate, the same data passes."""

from __future__ import annotations

import argparse
import json
import math

import pytest

from harness import compare
from harness.results import MANIFEST, load
from tests import synth

MEAS = ("startup", "memory", "cpu_quota")


def _args(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    compare.add_arguments(p)
    return p.parse_args(list(argv))


@pytest.fixture(autouse=True)
def _pages_in_tmp(tmp_path, monkeypatch):
    """compare writes its page under ./reports by default: keep it out of the checkout."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    r = tmp_path_factory.mktemp("cmp") / "results"
    base = synth.make_run(r, run_id="base", seed=5, measurements=MEAS)
    same = synth.make_run(r, run_id="same", seed=5, measurements=MEAS)
    slower = synth.make_run(r, run_id="slower", seed=5, measurements=MEAS,
                            scale=lambda b, m, k: 1.2 if (b, k) == ("container", "launch_to_ready") else 1.0)
    faster = synth.make_run(r, run_id="faster", seed=9, measurements=MEAS,
                            scale=lambda b, m, k: 0.8 if (b, k) == ("vm", "pss_overhead") else 1.0)
    return {"base": base, "same": same, "slower": slower, "faster": faster}


def test_same_data_passes(runs, capsys):
    assert compare.main(_args(str(runs["base"]), str(runs["same"]))) == 0
    out = capsys.readouterr().out
    assert "regression" not in out.split("\n\n", 2)[1]  # the summary line counts none
    assert "| backend" in out


def test_twenty_percent_regression_fails(runs, capsys, tmp_path):
    md = tmp_path / "out" / "cmp.md"
    assert compare.main(_args(str(runs["base"]), str(runs["slower"]), "--markdown", str(md))) == 1
    out = capsys.readouterr().out
    assert md.read_text().strip() == out.strip()
    rows = compare.compare(load(runs["base"]), load(runs["slower"]))
    bad = [r for r in rows if r.verdict == "regression"]
    assert {(r.key["backend"], r.key["metric"]) for r in bad} == {("container", "launch_to_ready")}
    assert all(r.change == pytest.approx(0.2, abs=1e-6) and r.p < 0.001 for r in bad)
    assert "**regression**" in out


def test_regression_below_the_threshold_passes(runs):
    assert compare.main(_args(str(runs["base"]), str(runs["slower"]), "--threshold", "0.25")) == 0


def test_improvement_is_not_a_failure(runs):
    rows = compare.compare(load(runs["base"]), load(runs["faster"]))
    better = {(r.key["backend"], r.key["metric"]) for r in rows if r.verdict == "improvement"}
    assert ("vm", "pss_overhead") in better
    assert not [r for r in rows if r.verdict == "regression"]


def test_directions():
    assert compare.direction("launch_to_ready") == compare.LOWER
    assert compare.direction("phase_clone") == compare.LOWER
    assert compare.direction("pss_overhead") == compare.LOWER
    assert compare.direction("mem_available") == compare.NONE
    assert compare.direction("cpu_ratio") == compare.ONE
    assert compare.direction("something_new", "ms") == compare.LOWER
    assert compare.direction("something_new", "count") == compare.NONE


def test_cpu_ratio_judged_by_distance_from_one():
    base = [1.00, 1.01, 0.99, 1.0, 1.0, 1.01, 0.99, 1.0]
    drifted = [v - 0.1 for v in base]  # 10 points further from 1
    verdict, *_ , change, p, _ = compare.judge(base, drifted, "cpu_ratio", "ratio", 0.05, 0.05)
    assert verdict == "regression" and change == pytest.approx(0.1) and p < 0.01
    closer = compare.judge([0.8] * 4 + [0.81] * 4, [0.99] * 4 + [1.0] * 4, "cpu_ratio", "ratio", 0.05, 0.05)
    assert closer[0] == "improvement"


def test_too_few_samples_is_said_not_judged_significant():
    verdict, *_, p, why = compare.judge([10, 10.1, 9.9], [20, 20.1, 19.9], "launch_to_ready", "ms", 0.05, 0.05)
    assert verdict == "no change" and p >= 0.05 and "too few samples" in why
    assert compare.min_p(3, 3) == pytest.approx(0.1)


def test_series_only_in_one_run(runs, tmp_path):
    only_bare = synth.make_run(tmp_path, run_id="only-bare", seed=5, backends=("bare",), measurements=MEAS)
    rows = compare.compare(load(runs["base"]), load(only_bare))
    assert any(r.verdict == "only in base" and r.key["backend"] == "container" for r in rows)
    assert all(math.isnan(r.p) for r in rows if r.verdict == "only in base")


def test_unreadable_input_exits_2_with_one_line(runs, tmp_path, capsys):
    assert compare.main(_args(str(runs["base"]), str(tmp_path / "missing"))) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "not a run directory" in err
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / MANIFEST).write_text("{not json")
    assert compare.main(_args(str(broken), str(runs["base"]))) == 2
    assert "unreadable manifest" in capsys.readouterr().err
    other = tmp_path / "other"
    other.mkdir()
    (other / MANIFEST).write_text(json.dumps({"schema": "something/else"}))
    assert compare.main(_args(str(runs["base"]), str(other))) == 2


def test_compare_writes_a_page_with_an_ab_chart_per_changed_metric(runs, tmp_path, capsys):
    out = tmp_path / "page"
    assert compare.main(_args(str(runs["base"]), str(runs["slower"]), "--out", str(out))) == 1
    assert f"page {out / 'compare.html'}" in capsys.readouterr().err
    html = (out / "compare.html").read_text()
    md = (out / "compare.md").read_text()
    assert md.splitlines()[2].startswith("**2 regression, ")  # noop and idle launch→ready
    assert "regression: container · startup/noop · launch_to_ready" in md
    charts = sorted(p.name for p in (out / "charts").glob("*.png"))
    assert charts[0] == "ab_00.png" and "compare_overview.png" in charts
    assert html.count('src="data:image/png;base64,') == len(charts)
    assert "+20.0%" in html and "<details>" in html
