"""The run as the unit (harness.stats: runs, prior, abtest, family, power, shift, slope, estimate), and
each defect issue 23 listed, pinned by a plain unit test."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.metric import HIGHER, LOWER, ONE
from harness.stats import abtest, estimate, power, prior, runs, shift, slope
from harness.stats.describe import ZERO_WIDTH, summarize
from harness.stats.family import SeriesData, judge, measure
from harness.stats.prior import Prior


# -- the defects ---------------------------------------------------------------------------------------
def test_an_undefined_standard_error_is_no_test_not_a_p_of_1e_minus_76():
    """Before: a NaN/inf standard error was replaced by 0 and a 14 % change got p ~ 1e-76."""
    assert math.isnan(abtest.t_p(0.14, math.nan, 5)) and math.isnan(abtest.t_p(0.14, math.inf, 5))
    assert math.isnan(abtest.t_p(0.14, 0.0, 5))  # no spread at all: undefined, not p = 0
    assert abtest.t_p(0.0, 0.0, 5) == 1.0
    b, n = runs.Runs(np.array([0.0, 0.0]), np.zeros(2), np.array([6, 6]), runs.LOG), \
        runs.Runs(np.array([0.14, 0.14]), np.zeros(2), np.array([6, 6]), runs.LOG)
    e = abtest.measure_runs(b, n, Prior(0.0, 2), paired=False, medians=(1.0, 1.15), n=(12, 12))
    assert math.isnan(e.p) and e.why == "no spread to test against"
    assert abtest.verdict(e, math.nan, LOWER, 0.05) == ("inconclusive", "no spread to test against")


def test_a_p_value_is_never_exactly_0():
    assert 0 < abtest.t_p(50.0, 1e-3, math.inf) < 1e-300
    assert 0 < abtest.t_p(50.0, 1e-3, 3)


def test_a_median_of_0_gives_no_relative_change_and_no_silent_drop():
    """Before: non-finite bootstrap draws (a base median of 0) were dropped silently."""
    e = measure([[0.0] * 6 + [1.0] * 3], [[0.0] * 5 + [1.0] * 4], LOWER, bootstraps=199)
    assert not math.isfinite(e.change)
    assert abtest.verdict(e, e.p, LOWER, 0.05)[0] == "inconclusive"


def test_equivalent_needs_the_interval_within_the_margin_not_two_close_medians():
    """Before: two medians within the resolution were "equivalent" whatever the interval."""
    wide = abtest.Effect(-0.01, -0.02, -1.0, -30.0, 28.0, 0.5, 30, 30, 1, 1, 0.1, math.inf, runs.ABS, 0.01)
    assert abtest.verdict(wide, 0.5, LOWER, 0.05, resolution=1 / 16)[0] == "inconclusive"
    tight = abtest.Effect(-0.01, -0.02, -1.0, -2.0, 0.5, 0.5, 30, 30, 1, 1, 0.1, math.inf, runs.ABS, 0.01)
    assert abtest.verdict(tight, 0.5, LOWER, 0.05, resolution=1 / 16) == (
        "equivalent", "the medians differ by less than the resolution (0.0625)")


def test_sees_counts_the_margin_and_the_correction():
    """Before: (z_a/2 + z_power) standard errors, whatever the margin and the number of series."""
    e = abtest.Effect(10, 10, 0.0, -0.01, 0.01, 1.0, 30, 30, 4, 4, 0.01, 6, runs.LOG, test=abtest.PAIRED)
    alone = power.sees(e, LOWER, 0.05, 0.05)
    assert alone > 0.05  # beyond the margin, not just beyond 0
    assert power.sees(e, LOWER, 0.05, 0.05 / 80) > alone  # one series of 80 must pass a harder bar
    assert power.sees(e, LOWER, 0.10, 0.05) > power.sees(e, LOWER, 0.05, 0.05)
    assert power.sees(e, HIGHER, 0.05, 0.05) < alone  # a drop: expm1 of a negative shift


def test_the_level_after_the_correction():
    assert power.alpha_after_correction([0.5] * 80, 0.05) == pytest.approx(0.05 / 80)
    assert power.alpha_after_correction([1e-9] * 4 + [0.5] * 76, 0.05) == pytest.approx(5 * 0.05 / 80)
    assert power.alpha_after_correction([1e-9] * 4 + [0.5] * 76, 0.05, "holm") == pytest.approx(0.05 / 76)


def test_planning_asks_for_more_runs_the_noisier_the_host_and_none_within_the_margin():
    quiet = power.plan(0.02 ** 2, 0, 0.10, 0.05, 0.05 / 40, paired=True)
    noisy = power.plan(0.06 ** 2, 0, 0.10, 0.05, 0.05 / 40, paired=True)
    assert quiet is not None and noisy is not None and 2 <= quiet < noisy
    assert power.plan(0.02 ** 2, 0, 0.05, 0.05, 0.05, paired=True) is None


# -- the run as the unit ---------------------------------------------------------------------------------
def test_a_run_medians_sampling_error_comes_from_its_own_interval_and_a_tick_widens_it():
    rng = np.random.default_rng(1)
    x = rng.lognormal(0, 0.05, (2000, 30))
    se = runs.median_se(x, runs.LOG)
    sd = np.std(np.log(np.median(x, axis=1)))
    assert np.mean(se) == pytest.approx(sd, rel=0.25)
    tied = np.full(30, 1.0)
    assert runs.median_se(tied, runs.ABS) == 0 and runs.median_se(tied, runs.ABS, tick=0.1) > 0
    assert math.isnan(float(runs.median_se(np.arange(5.0), runs.ABS)))  # below 6 samples: none


def test_a_calibration_carried_to_another_sample_size_replaces_the_within_run_part():
    cal = Prior(0.0010, 5, within=0.0004)
    assert cal.at(0.0001).var == pytest.approx(0.0007)  # tau^2 = 0.0006 stays, w = 0.0001 replaces 0.0004
    assert cal.at(0.0020).var == pytest.approx(0.0026)
    assert Prior(0.0003, 5, within=0.0004).at(0.0005).var == pytest.approx(0.0005)  # never below the runs' own
    assert Prior(0.001, 5).at(0.0001).var == 0.001  # within unknown: carried as it is


def test_variances_pool_as_chi_squared_information():
    p = prior.pool(Prior(1.0, 2), Prior(4.0, 6), prior.NONE)
    assert (p.var, p.df) == (pytest.approx(3.25), 8)


def test_the_family_prior_is_tight_when_series_agree_and_loose_when_they_do_not():
    rng = np.random.default_rng(2)
    alike = [Prior(float(v), 3) for v in 0.001 * rng.chisquare(3, 80) / 3]
    unlike = [Prior(float(v), 3) for v in 0.001 * np.exp(rng.normal(0, 1.5, 80)) * rng.chisquare(3, 80) / 3]
    a, u = prior.squeeze(alike), prior.squeeze(unlike)
    assert a.var == pytest.approx(0.001, rel=0.3) and a.df > 50
    assert u.df < 10
    assert prior.squeeze(alike[:2]) is prior.NONE  # too few series to say anything
    assert prior.squeeze(alike, g_eff=1.0).df <= 3  # one effective series lends one series' worth


def test_series_moved_together_by_the_host_count_as_one():
    rng = np.random.default_rng(3)
    shared = rng.normal(0, 1, 8)
    together = [shared + rng.normal(0, 0.05, 8) for _ in range(40)]
    apart = [rng.normal(0, 1, 8) for _ in range(40)]
    assert prior.effective_series(together) < 2
    assert prior.effective_series(apart) > 20


def test_paired_runs_cancel_a_drift_that_unpaired_runs_cannot():
    """Four pairs on a host that slows down 10 % per pair; B is A: paired, the drift cancels."""
    rng = np.random.default_rng(4)
    drift = [1.0, 1.1, 1.2, 1.3]
    a = [list(10 * d * rng.lognormal(0, 0.02, 30)) for d in drift]
    b = [list(10 * d * rng.lognormal(0, 0.02, 30)) for d in drift]
    paired = measure(a, b, LOWER, paired=True)
    unpaired = measure(a, b, LOWER)
    assert paired.test == abtest.PAIRED and unpaired.test == abtest.RUNS
    assert paired.hi - paired.lo < (unpaired.hi - unpaired.lo) / 3


def test_one_run_a_side_without_calibration_is_the_samples_test_said_so():
    rng = np.random.default_rng(5)
    e = measure([list(rng.lognormal(0, 0.05, 30))], [list(rng.lognormal(0.1, 0.05, 30))], LOWER, bootstraps=199)
    assert e.test == abtest.SAMPLES and e.p < 0.001
    with_prior = measure([list(rng.lognormal(0, 0.05, 30))], [list(rng.lognormal(0.1, 0.05, 30))], LOWER,
                         calibration=Prior(0.03 ** 2, 2))
    assert with_prior.test == abtest.RUNS and with_prior.df == 2 and with_prior.p > 0.01


def test_a_normalised_pair_of_runs_carries_the_references_sampling_error():
    x = [list(np.linspace(9, 11, 30))], [list(np.linspace(9, 11, 30))]
    plain = judge({0: SeriesData(*x, LOWER, base_extra=[0.0], new_extra=[0.0])}).judged[0].effect
    noisy = judge({0: SeriesData(*x, LOWER, base_extra=[0.01], new_extra=[0.01])}).judged[0].effect
    assert plain is not None and noisy is not None and noisy.se > 2 * plain.se


def test_metrics_judged_by_their_distance_from_one_stay_absolute():
    base = [[1.00, 1.01, 0.99, 1.0, 1.0, 1.01, 0.99, 1.0]] * 3
    worse = [[v - 0.1 for v in r] for r in base]
    e = measure(base, worse, ONE)
    assert e.absolute and e.change == pytest.approx(0.095, abs=0.01)


# -- estimates -------------------------------------------------------------------------------------------
def test_the_hodges_lehmann_shift():
    assert shift.hodges_lehmann(np.array([1.0, 2, 3]), np.array([2.0, 3, 4]), relative=False) == 1.0
    assert shift.hodges_lehmann(np.array([10.0] * 5), np.array([11.0] * 5), relative=True) == pytest.approx(0.1)
    assert math.isnan(shift.hodges_lehmann(np.array([0.0, 1]), np.array([1.0]), relative=True))


def test_a_tied_median_interval_is_widened_by_its_tick_or_not_resolved():
    x = [1.0] * 20 + [1.1] * 3
    assert not estimate.median(x).resolved and estimate.median(x).unresolved == estimate.ZERO_WIDTH
    e = estimate.median(x, tick=0.1)
    assert e.resolved and (e.lo, e.hi) == pytest.approx((0.95, 1.05))
    assert ZERO_WIDTH in summarize(x).warnings and ZERO_WIDTH not in summarize(x, tick=0.1).warnings
    r = estimate.ratio([2.0] * 10, [1.0] * 10, tick=0.1)
    assert r.resolved and r.lo < 2.0 < r.hi


def test_slopes_need_points_for_an_interval_and_say_when_they_drift():
    assert slope.theil_sen([0, 1, 2], [0, 2, 4]).why.startswith("too few points")
    k = np.arange(17.0)
    walk = 2 * k + np.cumsum(np.random.default_rng(6).normal(0, 3, 17))
    s = slope.theil_sen(k, walk)
    assert s.drift and s.lo < 2 < s.hi
    ramps = [(k, (2 + d) * k) for d in (-0.2, 0.0, 0.2)]
    pooled = slope.over_ramps(ramps)
    assert pooled.slope == pytest.approx(2.0) and pooled.n == 3 and pooled.lo < 1.8 and pooled.hi > 2.2
    assert slope.over_ramps(ramps[:2]).why.startswith("too few ramps")
