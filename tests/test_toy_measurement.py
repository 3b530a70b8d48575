"""A measurement registered at run time gets every generic path: the scenario's grid, keys and
overrides, the runner, the terminal summary, the report (section, table, chart, findings, headline),
compare and validate (checks, derived bounds, the self-test) — with no other file changed."""

from __future__ import annotations

import argparse
import json
import re
import tomllib
from pathlib import Path

import pytest

import runtimes
from harness import compare, report, results, runner, scenario, summary
from harness.commands import validate as validate_command
from harness.measure import catalogue
from harness.validate import cases, derive, parse_baseline, run_checks, selftest
from tests import toy_backend, toy_measurement

SCENARIO = """
[scenario]
name = "toy-measurement"
backends = ["bare", "toy"]
repetitions = 3
warmups = 0

[[experiment]]
measurement = "toy"
rounds = 2
grid = { level = [1, 2] }
overrides = { bare = { rounds = 3 } }

[backend.toy]
flavour = "spicy"
"""
BASELINE = """
[[bound]]
backend = "*"
measurement = "toy"
metric = "toy_limit"
equals = "16 * level"
stat = "all"
why = "the cell's level binds the limit"
"""


@pytest.fixture
def second_backend():
    """The toy backend beside bare metal: a ratio for the headline figure."""
    unregister = runtimes.register(toy_backend.DECLARATION)
    yield
    unregister()


@pytest.fixture
def toy(second_backend):
    unregister = catalogue().register(toy_measurement.INFO, toy_measurement.toy, *toy_measurement.METRICS)
    yield
    unregister()


@pytest.fixture
def run_dir(toy, tmp_path: Path) -> Path:
    sc = scenario.parse(tomllib.loads(SCENARIO), "toy.toml", SCENARIO)
    return runner.run(sc, tmp_path / "results", progress=False)


def test_registering_is_all_it_takes(toy) -> None:
    assert list(catalogue().measurements)[-1] == "toy" and catalogue().unit("toy_ms") == "ms"
    with pytest.raises(ValueError, match="already registered"):
        catalogue().register(toy_measurement.INFO, toy_measurement.toy)


def test_its_keys_are_checked_and_bound(toy) -> None:
    sc = scenario.parse(tomllib.loads(SCENARIO), "toy.toml")
    assert [(c.id, c.limits.pids, c.options) for c in sc.cases] == [
        ("toy/noop/level=1", 16, {"rounds": 2}), ("toy/noop/level=2", 32, {"rounds": 2})]
    assert sc.cases[0].for_backend("bare").options == {"rounds": 3}
    for bad, where in (("rounds = 9", r"experiment\[0\]\(toy\)\.rounds: must be between 1 and 5"),
                       ("instances = 3", r"experiment\[0\]\.instances: unknown key"),
                       ("grid = { level = [1], quota = [1] }", r"grid\.quota: unknown grid key \(allowed for toy: level\)")):
        text = SCENARIO.replace("rounds = 2", bad) if "rounds" in bad or "instances" in bad else \
            SCENARIO.replace("grid = { level = [1, 2] }", bad)
        with pytest.raises(scenario.ScenarioError, match=where):
            scenario.parse(tomllib.loads(text), "toy.toml")


def test_unregistered_it_is_unknown_again(second_backend) -> None:
    with pytest.raises(scenario.ScenarioError, match=r"experiment\[0\]\.rounds: unknown key"):
        scenario.parse(tomllib.loads(SCENARIO), "toy.toml")  # its own keys went with it
    with pytest.raises(scenario.ScenarioError, match="unknown measurement 'toy'"):
        scenario.parse(tomllib.loads(SCENARIO.replace("rounds = 2\n", "")), "toy.toml")


def test_the_runner_measures_it_and_the_summary_heads_with_it(run_dir: Path) -> None:
    assert json.loads((run_dir / "manifest.json").read_text())["status"] == "completed"
    rows = [r for r in results.read_samples(run_dir) if r["measurement"] == "toy"]
    assert all(r["status"] == "ok" for r in rows), [r["error"] for r in rows]
    launches = [r["backend"] for r in rows if r["metric"] == "toy_ms"]
    # two cells × three repetitions × two rounds, three where the override says so
    assert (launches.count("bare"), launches.count("toy")) == (2 * 3 * 3, 2 * 3 * 2)
    assert {(r["case"], r["value"]) for r in rows if r["metric"] == "toy_limit"} == {
        ("toy/noop/level=1", 16.0), ("toy/noop/level=2", 32.0)}
    header, table = summary.table(run_dir)
    assert any(row[:3] == ["toy", "noop", "toy_ms (ms)"] for row in table)


def test_the_report_gives_it_a_section_chart_findings_and_a_headline_panel(run_dir: Path, tmp_path: Path) -> None:
    out = report.build([run_dir], tmp_path / "report")
    md = (out / "report.md").read_text()
    assert "## Toy launches" in md and "Toy launches: statistics per series" in md
    assert "toy launches measured." in md  # its finding
    assert "Toy — toy launch → ready, medians with 95 % intervals" in md  # its headline figure's
    assert re.search(r"\n- toy: .* ms .*, [0-9.]+× bare", md)  # ... as a ratio to the reference
    assert "toy (launch → ready)" in (out / "charts" / "headline.svg").read_text()  # its headline panel
    assert (out / "tables" / "toy.csv").exists() and (out / "charts" / "toy_launches.png").exists()
    assert "toy_ms" in (out / "tables" / "toy.csv").read_text()


def test_compare_judges_its_series(run_dir: Path, tmp_path: Path) -> None:
    rows = [r for r in compare.compare(results.load(run_dir), results.load(run_dir), bootstraps=199)
            if r.key["measurement"] == "toy"]
    assert {r.key["metric"] for r in rows} == {"toy_ms", "toy_limit"}
    assert {r.verdict for r in rows if r.key["metric"] == "toy_ms"} <= {"equivalent", "inconclusive"}
    assert {r.verdict for r in rows if r.key["metric"] == "toy_limit"} == {"not judged"}  # no direction


def test_validate_checks_derives_and_self_tests_it(run_dir: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    baseline = parse_baseline(tomllib.loads(BASELINE), "toy-baseline.toml")
    run_cases = cases(results.load(run_dir))
    assert {(c.measurement, c.backend) for c in run_cases} == {("toy", "bare"), ("toy", "toy")}
    run_cases = [c for c in run_cases if c.backend == "bare"]
    checks = run_checks(baseline, run_cases, ["bare"])
    assert len(checks) >= 2 and {c.outcome for c in checks} == {"pass"}, [c.message for c in checks]
    bounds, _ = derive(run_cases)
    assert {(b["metric"], b["equals"]) for b in bounds} == {("toy_limit", 16.0), ("toy_limit", 32.0)}
    clean, verdicts = selftest.self_test(baseline, run_cases, ["bare"], cores=2)
    assert clean == []
    toy_verdict = next(v for v in verdicts if v.mutation == "toy limit one too high")
    assert toy_verdict.caught and len(toy_verdict.mutated) == 2
    (tmp_path / "toy-baseline.toml").write_text(BASELINE)
    p = argparse.ArgumentParser()
    validate_command.add_arguments(p)
    assert validate_command.main(p.parse_args([str(run_dir), "--baseline", str(tmp_path / "toy-baseline.toml")])) == 0
