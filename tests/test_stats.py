"""harness.stats on data whose answers are known."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from harness.stats import MIN_N_CI, describe, pvalues, quantile, slope
from harness.stats.ratio import ratio_of_medians


def test_summarize_known_values():
    s = describe.summarize([1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
    assert s.n == 10
    assert s.median == 5.5
    assert s.min == 1 and s.max == 10
    assert s.mean == 5.5
    assert s.stdev == pytest.approx(3.0276503540974917)
    assert s.cv == pytest.approx(3.0276503540974917 / 5.5)
    assert s.p90 == pytest.approx(9.1)
    assert s.p99 == pytest.approx(9.91)
    assert s.ci_lo <= s.median <= s.ci_hi
    assert (s.ci_lo, s.ci_hi) == (2, 9)  # order statistics 2 and 9 of 10: coverage 97.9 %
    assert s.outliers == 0


def test_median_interval_is_scipys_order_statistic_interval():
    from scipy import stats as sst

    for n in range(1, 80):
        x = np.sort(np.random.default_rng(n).normal(size=n))
        ref = sst.quantile_test(x, q=0, p=0.5).confidence_interval(0.95)
        lo, hi = quantile.quantile_ci(x)
        assert (math.isnan(lo) and math.isnan(ref.low)) or (lo, hi) == (ref.low, ref.high), n
    assert quantile.quantile_ci_ranks(MIN_N_CI - 1) is None and quantile.quantile_ci_ranks(MIN_N_CI) is not None
    assert MIN_N_CI == 6
    assert quantile.quantile_ci_ranks(10) == (2, 9) and quantile.quantile_ci_ranks(30) == (10, 21)
    assert quantile.quantile_ci_ranks(30, 0.9) is None  # a p90 interval needs far more samples than a median


@pytest.mark.parametrize("draw", ["normal", "lognormal", "ties"])
def test_median_interval_covers_at_least_94_percent_wherever_printed(draw):
    """Simulated coverage of the printed 95 % interval of a median at every n from the first one printed."""
    rng = np.random.default_rng(2024)
    trials = 8000
    for n in range(1, 61):
        ranks = quantile.quantile_ci_ranks(n)
        if ranks is None:
            assert n < MIN_N_CI
            continue
        if draw == "normal":
            x, true = rng.standard_normal((trials, n)), 0.0
        elif draw == "lognormal":
            x, true = rng.lognormal(0, 1, (trials, n)), 1.0
        else:  # a timer with coarse resolution: many ties; median of Poisson(3) is 3
            x, true = rng.poisson(3, (trials, n)).astype(float), 3.0
        x.sort(axis=1)
        covered = (x[:, ranks[0] - 1] <= true) & (true <= x[:, ranks[1] - 1])
        assert covered.mean() >= 0.94, (n, covered.mean())


def test_no_interval_below_the_n_where_it_exists():
    for n in range(1, 6):
        s = describe.summarize(np.arange(n, dtype=float) + 10)
        assert math.isnan(s.ci_lo) and math.isnan(s.ci_hi)
        assert any("too few samples for a 95% interval" in w for w in s.warnings)
    s = describe.summarize([10, 11, 12, 13, 14, 15])
    assert (s.ci_lo, s.ci_hi) == (10, 15)


def test_summarize_is_deterministic():
    rng = np.random.default_rng(3)
    x = rng.lognormal(0, 0.3, 40)
    assert describe.summarize(x) == describe.summarize(x)


def test_warnings_like_pyperf():
    stable = describe.summarize([100, 101, 99, 100, 100, 101, 99, 100])
    assert stable.warnings == ()
    few = describe.summarize([100, 101, 99])
    assert any("too few samples" in w for w in few.warnings)
    noisy = describe.summarize([50, 100, 150, 200, 80, 120, 60, 140])
    assert any("cv" in w for w in noisy.warnings)
    spiky = describe.summarize([10, 10.1, 9.9, 10, 10.2, 9.8, 10, 55])
    assert spiky.outliers == 1
    assert any("outlier" in w for w in spiky.warnings)


def test_outliers_when_most_values_are_equal():
    # MAD is 0 here; the mean-absolute-deviation fallback still finds the spike
    assert describe.outlier_mask(np.array([5.0, 5, 5, 5, 50])).tolist() == [False] * 4 + [True]
    assert not describe.outlier_mask(np.array([5.0, 5, 5, 5, 5])).any()


def test_summarize_drops_missing_and_handles_empty():
    s = describe.summarize([1.0, None, float("nan"), 3.0])
    assert s.n == 2 and s.median == 2.0
    empty = describe.summarize([])
    assert empty.n == 0 and math.isnan(empty.median) and empty.warnings == ("no samples",)
    one = describe.summarize([7])
    assert one.median == 7 and math.isnan(one.ci_lo) and math.isnan(one.cv)


def _rows(**over):
    base = dict(backend="bare", accel=None, measurement="startup", workload="noop", metric="launch_to_ready",
                unit="ms", warmup=False, status="ok")
    base.update(over)
    return base


def test_summary_table_groups_and_excludes_warmups_and_failures():
    rows = [_rows(value=v) for v in (1, 2, 3, 4, 5)]
    rows += [_rows(value=1000, warmup=True)]
    rows += [_rows(value=None, status="failed", error="boom")]
    rows += [_rows(backend="container", value=v) for v in (10, 11, 12)]
    rows += [_rows(measurement="cpu_quota", workload="cpu", metric="cpu_ratio", unit="ratio", value=v,
                   param_quota=q) for q in (0.5, 1.0) for v in (0.99, 1.0, 1.01)]
    t = describe.summary_table(pd.DataFrame(rows))
    bare = t[(t.backend == "bare") & (t.measurement == "startup")].iloc[0]
    assert bare["n"] == 5 and bare["median"] == 3 and bare["max"] == 5  # the warm-up's 1000 is not in
    assert bare["failed"] == 1 and "1 failed" in bare["warnings"]
    cont = t[t.backend == "container"].iloc[0]
    assert cont["n"] == 3 and "too few samples" in cont["warnings"]
    assert len(t[t.measurement == "cpu_quota"]) == 2  # one row per param value
    assert {"backend", "accel", "metric", "unit", "param_quota", "median", "ci_lo", "ci_hi", "cv",
            "outliers", "warnings", "failed"} <= set(t.columns)


def test_summary_table_series_that_only_failed():
    t = describe.summary_table(pd.DataFrame([_rows(value=None, status="failed")] * 2))
    assert t.iloc[0]["n"] == 0 and t.iloc[0]["failed"] == 2
    assert t.iloc[0]["warnings"] == "all 2 samples failed"


def test_the_rank_test_separates_different_samples_and_not_equal_ones():
    rng = np.random.default_rng(7)
    a = rng.normal(10, 0.3, 20)
    assert pvalues.permutation_p(a, a * 1.2) < 0.001
    assert pvalues.permutation_p(a, a) > 0.9
    assert pvalues.permutation_p(np.array([3.0, 3, 3]), np.array([3.0, 3, 3])) == 1.0


def test_ratio_of_medians():
    rng = np.random.default_rng(11)
    a = rng.normal(20, 0.5, 30)
    b = rng.normal(10, 0.25, 30)
    ratio, lo, hi = ratio_of_medians(a, b)
    assert ratio == pytest.approx(np.median(a) / np.median(b))
    assert lo < ratio < hi and 1.9 < lo and hi < 2.1
    assert all(math.isnan(x) for x in ratio_of_medians([1.0], [0.0]))
    # three values a side: a ratio, but no interval (a bootstrap of 3 has ~10 distinct medians)
    r, lo, hi = ratio_of_medians([3.0, 3.3, 2.9], [1.0, 1.1, 0.9])
    assert r == pytest.approx(3.0) and math.isnan(lo) and math.isnan(hi)


def test_ratio_interval_covers_the_true_ratio():
    """BCa over both samples: coverage of median ratio of two lognormals (true ratio 2) at n=12."""
    rng = np.random.default_rng(8)
    hits = [lo <= 2.0 <= hi for lo, hi in
            (ratio_of_medians(rng.lognormal(np.log(2), 0.3, 12), rng.lognormal(0, 0.3, 12),
                                    n_resamples=999, seed=i)[1:] for i in range(150))]
    assert np.mean(hits) >= 0.88  # bootstrap intervals are approximate; far above the old 75 %


def test_theil_sen_ignores_a_step_and_says_when_unresolved():
    k = np.arange(17.0)
    y = 1000 - 1.0 * k
    y[4:] -= 35  # one 35 MiB step (a page-cache refill) between instances 3 and 4
    s = slope.theil_sen(k, y)
    assert s.slope == pytest.approx(-1.0, abs=0.2) and s.lo <= s.slope <= s.hi
    noisy = slope.theil_sen(k, np.random.default_rng(1).normal(0, 5, k.size))
    assert not noisy.resolved


def test_one_series_identity_for_the_summary_table_compare_and_the_report():
    from harness.stats.series import SeriesKey, groups

    row = dict(backend="vm", accel="tcg", measurement="startup", workload="noop", metric="launch_to_ready",
               unit="ms", param_quota=1.0, param_x=math.nan, split="hostB")
    k = SeriesKey.of(row, ["param_quota", "param_x"], split=True)
    assert k.params == (("quota", 1),) and k.split == "hostB"  # 1.0 is 1; a missing param is left out
    assert k.text() == "vm@tcg|startup|noop|launch_to_ready|ms|quota=1"
    assert k.label() == "vm (TCG, emulated) @ hostB"
    plain = SeriesKey.of({**row, "accel": None}, ["param_quota"])
    assert plain.text() == "vm|startup|noop|launch_to_ready|ms|quota=1"  # noise files keep their keys
    assert plain.label() == "vm" and plain.split is None
    df = pd.DataFrame([_rows(value=1.0), _rows(value=2.0, param_n=3), _rows(value=3.0, param_n=3.0)])
    found = {key: list(g["value"]) for key, _, g in groups(df)}
    assert found == {SeriesKey("bare", None, "startup", "noop", "launch_to_ready", "ms"): [1.0],
                     SeriesKey("bare", None, "startup", "noop", "launch_to_ready", "ms", (("n", 3),)): [2.0, 3.0]}


def test_rows_are_grouped_by_their_stored_case():
    from harness.stats.series import groups

    df = pd.DataFrame([_rows(value=1.0, case="startup/noop"), _rows(value=2.0, case="startup/noop"),
                       _rows(value=3.0, case="startup/noop/v=2")])  # two cases, the same param columns
    found = [(raw["case"], list(g["value"])) for _, raw, g in groups(df)]
    assert found == [("startup/noop", [1.0, 2.0]), ("startup/noop/v=2", [3.0])]
    legacy = [list(g["value"]) for _, _, g in groups(pd.DataFrame([_rows(value=1.0), _rows(value=2.0)]))]
    assert legacy == [[1.0, 2.0]]  # rows stored before they carried their case: one case per params


@pytest.mark.parametrize(("how", "value", "text"), [
    ("table", 29.7412, "29.74"), ("table", 1024.0, "1,024"), ("table", 0.0000123, "1.23e-05"), ("table", None, ""),
    ("prose", 0.01404, "0.0140"), ("prose", 3812.0, "3,810"), ("prose", math.nan, "?"),
    ("compact", 8021.0, "8.02e+03"), ("exact", 16.0, "16"), ("exact", 0.5, "0.5")])
def test_one_number_formatter_in_four_styles(how, value, text):
    from harness.stats.numbers import fmt

    assert fmt(value, how) == text
