"""isobench validate: bounds, missing cases, JUnit output, deriving a baseline."""

from __future__ import annotations

import argparse
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness import validate
from harness.commands import validate as command
from harness.results import load
from tests import synth

ROOT = Path(__file__).parent.parent
BASELINE = ROOT / "baselines" / "enforcement.toml"
ENF = ("cpu_quota", "mem_limit", "pids_limit")


def _args(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    command.add_arguments(p)
    return p.parse_args(list(argv))


@pytest.fixture(autouse=True)
def _pages_in_tmp(tmp_path, monkeypatch):
    """validate writes its page under ./reports by default: keep it out of the checkout."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    return synth.make_run(tmp_path_factory.mktemp("val") / "results", run_id="good", measurements=ENF,
                          backends=("bare", "container"))


def test_shipped_baseline_passes_a_run_that_meets_it(good, tmp_path, capsys):
    xml = tmp_path / "junit" / "validate.xml"
    assert command.main(_args(str(good), "--baseline", str(BASELINE), "--junit", str(xml))) == 0
    out = capsys.readouterr().out
    assert "FAIL" not in out and "MISSING" not in out and " 0 failed, 0 missing" in out
    suite = ET.parse(xml).getroot().find("testsuite")
    cases = suite.findall("testcase")
    assert len(cases) == int(suite.get("tests")) > 20 and suite.get("failures") == "0"
    names = [c.get("name") for c in cases]
    assert any("cpu_ratio median >= 0.98" in n for n in names)
    assert any("cpu_ratio median <= 1.02" in n for n in names)
    assert any("throttled_share median <= 0.02" in n for n in names)
    assert any("pids_reached all == 16" in n and "count=32" in n for n in names)
    assert any("oom_killed all == 1" in n and "mib=128" in n for n in names)
    assert any("pids_reached all <= 16" in n for n in names)


def test_violations_fail_with_observed_vs_bound(tmp_path, capsys):
    # the container delivers 20 % too much CPU, escapes the OOM killer and forks past the limit
    bad = synth.make_run(tmp_path / "results", run_id="bad", measurements=ENF, backends=("bare", "container"),
                         scale=lambda b, m, k: 1.2 if (b, k) == ("container", "cpu_ratio") else 1.0,
                         overrides={("container", "oom_killed"): 0, ("container", "pids_reached"): 20})
    xml = tmp_path / "v.xml"
    assert command.main(_args(str(bad), "--baseline", str(BASELINE), "--junit", str(xml))) == 1
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("FAIL")]
    assert lines and all(" container " in ln for ln in lines)
    assert any("cpu_ratio median 1.2" in ln and "> max 1.02" in ln for ln in lines)
    assert any("oom_killed worst sample 0 != 1" in ln for ln in lines)
    assert any("pids_reached worst sample 20 > max 16" in ln for ln in lines)
    failures = ET.parse(xml).getroot().iter("failure")
    msgs = [f.get("message") for f in failures]
    assert len(msgs) == len(lines) and all(m for m in msgs)


def test_missing_cases_are_reported_not_passed(tmp_path, capsys):
    cpu_only = synth.make_run(tmp_path / "results", run_id="cpu-only", measurements=("cpu_quota",),
                              backends=("bare", "container"))
    xml = tmp_path / "v.xml"
    assert command.main(_args(str(cpu_only), "--baseline", str(BASELINE), "--junit", str(xml))) == 1
    out = capsys.readouterr().out
    assert "MISSING bare mem_limit oom_killed when mib > limit_mib: no matching case in this run" in out
    assert "MISSING container pids_limit pids_reached" in out
    kinds = {f.get("type") for f in ET.parse(xml).getroot().iter("failure")}
    assert kinds == {"missing"}


def test_optional_backend_without_rows_is_skipped(good, tmp_path, capsys):
    base = tmp_path / "b.toml"
    base.write_text(BASELINE.read_text() + '\n[[bound]]\nbackend = "vm"\nmeasurement = "cpu_quota"\n'
                    'metric = "cpu_ratio"\nmin = 0.9\n')
    assert command.main(_args(str(good), "--baseline", str(base), "--junit", str(tmp_path / "v.xml"))) == 0
    out = capsys.readouterr().out
    assert "SKIPPED vm cpu_quota cpu_ratio: no matching case in this run" in out
    skipped = [s.get("message") for s in ET.parse(tmp_path / "v.xml").getroot().iter("skipped")]
    assert sum(m.startswith("vm ") for m in skipped) == 1


def test_named_backend_replaces_the_wildcard(good):
    baseline = validate.parse_baseline({"bound": [
        {"backend": "*", "measurement": "cpu_quota", "metric": "cpu_ratio", "min": 1.5},  # everyone fails...
        {"backend": "bare", "measurement": "cpu_quota", "metric": "cpu_ratio", "min": 0.5},  # ...but bare
    ]})
    checks = validate.run_checks(baseline, validate.cases(load(good)), ["bare", "container"])
    failed = {c.classname for c in checks if c.failed}
    assert failed == {"isobench.container.cpu_quota"}
    assert any(c.classname == "isobench.bare.cpu_quota" and c.outcome == "pass" for c in checks)


def test_require_skips_cases_a_busy_host_starved(tmp_path, capsys):
    # bare: the quota bound (throttled every period) yet 20 % short -> fail;
    # container: never throttled (the host did not let it reach the quota) -> skipped, not failed
    starved = synth.make_run(tmp_path / "results", run_id="starved", measurements=("cpu_quota",),
                             backends=("bare", "container"),
                             scale=lambda b, m, k: 0.8 if k in ("cpu_ratio", "cpu_delivered") else 1.0,
                             overrides={("container", "throttled_share"): 2 / 26})
    baseline = tmp_path / "b.toml"
    text = BASELINE.read_text()
    baseline.write_text(text[:text.index("# -- mem_limit")])
    assert command.main(_args(str(starved), "--baseline", str(baseline))) == 1
    out = capsys.readouterr().out.splitlines()
    fails = [ln for ln in out if ln.startswith("FAIL")]
    skips = [ln for ln in out if ln.startswith("SKIPPED") and "not judged" in ln]
    ratio_fails = [ln for ln in fails if "cpu_ratio" in ln]
    assert ratio_fails and all(ln.startswith("FAIL bare ") and "< min 0.98" in ln for ln in ratio_fails)
    # (the override also throttles container cells whose demand is within the quota: that fails)
    assert all("throttled_share" in ln and "threads=1:" in ln for ln in fails if ln not in ratio_fails)
    assert skips and all(ln.startswith("SKIPPED container ") for ln in skips)
    assert "requires throttled_share >= 0.8 (throttled_share=0.07692)" in skips[0]


def test_failed_repetitions_fail_the_case(tmp_path):
    from harness.results import RunWriter, Sample

    w = RunWriter(tmp_path, {"host": synth.host(), "backends": {"bare": {}}}, run_id="flaky")
    p = {"limit": 16, "count": 8}
    w.add(Sample("bare", "pids", "pids_limit", "pids_reached", 9, "count", p, 0))
    w.add(Sample("bare", "pids", "pids_limit", "pids_reached", None, "count", p, 1, status="failed",
                 error="BackendError: cgroup vanished"))
    w.finish("completed")
    baseline = validate.parse_baseline({"bound": [
        {"measurement": "pids_limit", "metric": "pids_reached", "stat": "all", "max": "limit"}]})
    checks = validate.run_checks(baseline, validate.cases(load(w.dir)), ["bare"])
    assert [c.outcome for c in checks] == ["pass", "fail"]
    assert "1 failed sample: BackendError: cgroup vanished" in checks[1].message


def test_update_baseline_round_trip(good, tmp_path, capsys):
    derived = tmp_path / "derived.toml"
    assert command.main(_args(str(good), "--baseline", str(derived), "--update-baseline")) == 0
    assert "bounds derived from" in capsys.readouterr().out
    b = validate.load_baseline(derived)
    ratio = [x for x in b.bounds if x.metric == "cpu_ratio" and x.backend == "container"]
    uppers = [x for x in ratio if x.max is not None]
    lowers = [x for x in ratio if x.min is not None]
    # bands from the run's own spread, within [1 %, 2.5 %]: narrow enough to catch 3 %
    assert len(uppers) == 8 and all(1.005 <= x.max <= 1.035 and x.require is None for x in uppers)
    assert len(lowers) == 6 and all(0.965 <= x.min <= 1.0 for x in lowers)
    # where the quota binds (quota < threads) the lower end needs the cgroup to have been throttled
    assert {x.params["quota"] < x.params["threads"] for x in lowers if x.require is not None} == {True}
    ooms = {x.params["mib"]: x.min for x in b.bounds if x.metric == "oom_killed"}
    assert ooms == {32: 0, 128: 1}
    assert command.main(_args(str(good), "--baseline", str(derived))) == 0


@pytest.mark.parametrize(("bound", "problem"), [
    ({"measurement": "cpu_quota", "metric": "cpu_ratio"}, "needs min, max or equals"),
    ({"measurement": "cpu_quota", "metric": "cpu_ratio", "min": 2, "max": 1}, "is above max"),
    ({"measurement": "cpu_quota", "metric": "cpu_ratio", "min": "__import__('os')"}, "only param names"),
    ({"measurement": "cpu_quota", "metric": "cpu_ratio", "min": 1, "stat": "p50"}, "stat: must be one of"),
    ({"measurement": "cpu_quota", "min": 1}, "metric: required"),
    ({"measurement": "cpu_quota", "metric": "x", "min": 1, "colour": "red"}, "colour: unknown key"),
    ({"measurement": "cpu_quota", "metric": "x", "equals": 1, "max": 2}, "equals cannot be combined"),
])
def test_malformed_baseline_is_one_clear_line(bound, problem):
    with pytest.raises(validate.BaselineError, match=problem) as e:
        validate.parse_baseline({"bound": [bound]}, "b.toml")
    assert str(e.value).startswith("b.toml: bound[0]") and "\n" not in str(e.value)


def test_bad_inputs_exit_2(good, tmp_path, capsys):
    assert command.main(_args(str(tmp_path / "nope"), "--baseline", str(BASELINE))) == 2
    assert "not a run directory" in capsys.readouterr().err
    assert command.main(_args(str(good), "--baseline", str(tmp_path / "none.toml"))) == 2
    assert "cannot read" in capsys.readouterr().err
    typo = tmp_path / "typo.toml"
    typo.write_text('[[bound]]\nmeasurement = "pids_limit"\nmetric = "pids_reached"\nmax = "limt"\n')
    assert command.main(_args(str(good), "--baseline", str(typo))) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "'limt'" in err


def test_expressions():
    e = validate.Expr.parse("mib > limit_mib and not count", "w")
    assert e({"mib": 128, "limit_mib": 64, "count": 0}) is True
    assert validate.Expr.parse("limit - 1", "w")({"limit": 16}) == 15
    assert validate.Expr.parse("1 <= x < 3", "w")({"x": 2}) is True
    with pytest.raises(validate.BaselineError):
        validate.Expr.parse("x.__class__", "w")
    with pytest.raises(validate.BaselineError):
        validate.Expr.parse("f(x)", "w")


def test_validate_writes_a_grid_page_failing_cells_first(tmp_path, capsys):
    bad = synth.make_run(tmp_path / "results", run_id="bad", measurements=ENF, backends=("bare", "container"),
                         overrides={("container", "pids_reached"): 40})
    out = tmp_path / "page"
    assert command.main(_args(str(bad), "--baseline", str(BASELINE), "--out", str(out))) == 1
    assert f"validate: page {out / 'validate.html'}" in capsys.readouterr().out
    html = (out / "validate.html").read_text()
    md = (out / "validate.md").read_text()
    assert "Gate FAILED" in html and "Gate FAILED" in md
    grid = md[md.index("| case | bare | container |"):].splitlines()
    assert grid[2].startswith("| pids_limit/pids") and "✗ fail" in grid[2].split("|")[3]  # failing row first
    assert "✓ pass" in grid[2].split("|")[2]  # bare held the same case
    assert grid[-1].count("✓ pass") == 2
    assert html.index('<tr><td>pids_limit/pids count=32') < html.index('<tr><td>cpu_quota')
