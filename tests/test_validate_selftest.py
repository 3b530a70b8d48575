"""The gate's mutation self-test: the shipped baseline passes a good run and fails each regression."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from harness import validate
from harness.commands import validate as command
from harness.results import load
from harness.validate import selftest
from tests import synth

ROOT = Path(__file__).parent.parent
BASELINE = ROOT / "baselines" / "enforcement.toml"
ENF = ("cpu_quota", "mem_limit", "pids_limit")


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    return synth.make_run(tmp_path_factory.mktemp("st") / "results", run_id="good", measurements=ENF,
                          backends=("bare", "container"))


def _args(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    command.add_arguments(p)
    return p.parse_args(list(argv))


@pytest.mark.parametrize("mutation", list(selftest.mutations()))
def test_each_mutation_fails_the_gate_naming_the_cell(good, mutation):
    baseline = validate.load_baseline(BASELINE)
    cases = validate.cases(load(good))
    mutated, changed = selftest.mutate(cases, selftest.mutations()[mutation], cores=2)
    assert changed, f"{mutation}: the run has no cell it applies to"
    failed = [c for c in validate.run_checks(baseline, mutated, ["bare", "container"]) if c.failed]
    assert failed, f"{mutation} passed the gate"
    # every failure is in a mutated cell, and names it
    assert all(any(c.message.startswith(cell + ":") for cell in changed) for c in failed), \
        [c.message for c in failed]


def test_the_untouched_run_passes(good):
    clean, verdicts = selftest.self_test(validate.load_baseline(BASELINE), validate.cases(load(good)),
                                         ["bare", "container"], cores=2)
    assert clean == []
    assert all(v.caught for v in verdicts)
    lines, ok = selftest.report(clean, verdicts)
    assert ok and lines[0] == "untouched run: passes"


def test_self_test_command(good, capsys):
    assert command.main(_args(str(good), "--baseline", str(BASELINE), "--self-test")) == 0
    out = capsys.readouterr().out
    assert "quota ignored: caught" in out and "3 % under-delivery: caught" in out
    assert "self-test: passed" in out


def test_a_loose_baseline_fails_the_self_test(good, tmp_path, capsys):
    # the old ±5 % bands let a 3 % regression through: the self-test must say so
    loose = tmp_path / "loose.toml"
    loose.write_text(BASELINE.read_text().replace("max = 1.02", "max = 1.05").replace("min = 0.98", "min = 0.95"))
    assert command.main(_args(str(good), "--baseline", str(loose), "--self-test")) == 1
    out = capsys.readouterr().out
    assert "3 % under-delivery: NOT CAUGHT" in out and "self-test: FAILED" in out


def test_a_missing_counter_named_by_require_is_a_failure(good):
    baseline = validate.parse_baseline({"bound": [
        {"measurement": "cpu_quota", "metric": "cpu_ratio", "min": 0.5, "require": "no_such_counter > 0"}]})
    checks = validate.run_checks(baseline, validate.cases(load(good)), ["bare"])
    assert checks and all(c.outcome == "fail" for c in checks if "cpu_ratio" in c.name)
    assert "no_such_counter was not measured (missing counter)" in checks[0].message
