"""Stored runs report identically: every table cell, before and after a refactor."""

from __future__ import annotations

import pytest

from tests.golden_tables import GOLDEN, RUNS, render


@pytest.mark.parametrize("run", RUNS)
def test_report_tables_of_a_stored_run_are_unchanged(run: str) -> None:
    expected = {p.name: p.read_text() for p in sorted((GOLDEN / run).iterdir())}
    assert expected, f"no golden files under {GOLDEN / run}"
    got = render(run)
    assert sorted(got) == sorted(expected), "the report writes a different set of tables"
    for name, text in expected.items():
        assert got[name] == text, f"{run}/{name} differs from tests/golden (python -m tests.golden_tables regenerates)"
