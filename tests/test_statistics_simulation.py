"""Issue 23's targets, pinned by simulation through the project's own functions (tests/simulation.py:
3 % lognormal run-to-run variation, 5 % within-run cv, 30 samples a run, families of 80 series).

Seeded, so the numbers are the same every run; the bounds leave room for the binomial error
each row states (docs/statistics.md carries the table: ``python -m tests.simulation``).
"""

from __future__ import annotations

import pytest

from tests import simulation


@pytest.fixture(scope="module")
def table() -> dict[str, simulation.Result]:
    return {r.name: r for r in simulation.table()}


def _row(table: dict[str, simulation.Result], start: str) -> simulation.Result:
    found = [r for name, r in table.items() if name.startswith(start)]
    assert len(found) == 1, f"{start!r}: {len(found)} rows"
    return found[0]


def test_the_issues_figures_are_reproduced_by_the_formulas_used_before(table):
    """The defects the issue measured, re-run: far above the stated 5 % (or far below coverage)."""
    assert _row(table, "A/A, 1 vs 1 run, calibrated from 2 runs: per-series").before > 0.10
    assert _row(table, "A/A, 1 vs 1 run, calibrated from 3 runs: family").before > 0.5
    assert _row(table, "A/A, 2 vs 2 runs pooled").before > 0.10
    assert _row(table, "A/A normalised").before > 0.12
    assert _row(table, "median interval, 0.1 ms ticks, n = 40: covers").before < 0.85
    assert _row(table, "median interval, 0.1 ms ticks, n = 40: zero width").before > 0.10
    assert _row(table, "slope, 3 points, independent: printed and missing").before > 0.15
    assert _row(table, "slope, 17 points, random walk: printed and missing").before > 0.3


@pytest.mark.parametrize("start", ["A/A, 1 vs 1 run, calibrated from 3 runs: per-series",
                                   "A/A, isobench ab K=3 paired: per-series", "A/A, isobench ab K=4 paired: per-series",
                                   "A/A, 2 vs 2 runs pooled", "A/A, 3 vs 3 runs pooled", "A/A, 1 vs 3 runs pooled",
                                   "A/A normalised"])
def test_per_series_a_a_false_alarms_are_at_most_6_percent(table, start):
    assert _row(table, start).now <= 0.06


@pytest.mark.parametrize("start", ["A/A, 1 vs 1 run, calibrated from 2 runs: family",
                                   "A/A, 1 vs 1 run, calibrated from 3 runs: family",
                                   "A/A, isobench ab K=3 paired: family", "A/A, isobench ab K=4 paired: family"])
def test_family_wise_a_a_false_alarms_over_80_series_are_at_most_10_percent(table, start):
    assert _row(table, start).now <= 0.10


@pytest.mark.parametrize("k", [3, 4])
def test_a_15_percent_change_is_found_in_80_percent_with_k_runs_a_side(table, k):
    assert _row(table, f"15 % slower, isobench ab K={k}: found (8 of 80").now >= 0.80


def test_quantised_medians_are_covered_or_marked_and_never_zero_width(table):
    assert _row(table, "median interval, 0.1 ms ticks, n = 40: covers").now >= 0.93
    assert _row(table, "median interval, 0.1 ms ticks, n = 40: zero width").now == 0.0
    assert _row(table, "ratio interval, 0.1 ms ticks, n = 40").now >= 0.93


@pytest.mark.parametrize("start", ["slope, 3 points", "slope, 17 points, independent", "slope, 17 points, AR(1)",
                                   "slope, 17 points, random walk", "slope, 8 points, random walk"])
def test_a_printed_slope_interval_misses_at_most_10_percent(table, start):
    assert [r for n, r in table.items() if n.startswith(start) and "missing" in n][0].now <= 0.10


def test_slopes_from_3_points_have_no_interval_and_pooled_ramps_count_each_ramp_once(table):
    assert _row(table, "slope, 3 points, independent: interval printed").now == 0.0
    assert _row(table, "slope of 3 ramps").now >= 0.90


def test_sees_is_the_change_found_80_percent_of_the_time(table):
    assert 0.6 <= _row(table, "sees ≥").now <= 0.97
