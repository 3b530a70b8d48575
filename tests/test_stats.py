"""harness.stats on data whose answers are known."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from harness import stats


def test_summarize_known_values():
    s = stats.summarize([1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
    assert s.n == 10
    assert s.median == 5.5
    assert s.min == 1 and s.max == 10
    assert s.mean == 5.5
    assert s.stdev == pytest.approx(3.0276503540974917)
    assert s.cv == pytest.approx(3.0276503540974917 / 5.5)
    assert s.p90 == pytest.approx(9.1)
    assert s.p99 == pytest.approx(9.91)
    assert s.ci_lo <= s.median <= s.ci_hi
    assert 2.5 <= s.ci_lo and s.ci_hi <= 8.5
    assert s.outliers == 0


def test_median_ci_agrees_with_scipy_bootstrap():
    from scipy import stats as sst

    x = np.random.default_rng(5).normal(50, 5, 60)
    ref = sst.bootstrap((x,), np.median, method="percentile", n_resamples=4000, rng=1).confidence_interval
    lo, hi = stats.bootstrap_median_ci(x)
    assert lo == pytest.approx(ref.low, abs=0.6) and hi == pytest.approx(ref.high, abs=0.6)


def test_summarize_is_deterministic():
    rng = np.random.default_rng(3)
    x = rng.lognormal(0, 0.3, 40)
    assert stats.summarize(x) == stats.summarize(x)


def test_warnings_like_pyperf():
    stable = stats.summarize([100, 101, 99, 100, 100, 101, 99, 100])
    assert stable.warnings == ()
    few = stats.summarize([100, 101, 99])
    assert any("too few samples" in w for w in few.warnings)
    noisy = stats.summarize([50, 100, 150, 200, 80, 120, 60, 140])
    assert any("cv" in w for w in noisy.warnings)
    spiky = stats.summarize([10, 10.1, 9.9, 10, 10.2, 9.8, 10, 55])
    assert spiky.outliers == 1
    assert any("outlier" in w for w in spiky.warnings)


def test_outliers_when_most_values_are_equal():
    # MAD is 0 here; the mean-absolute-deviation fallback still finds the spike
    assert stats.outlier_mask(np.array([5.0, 5, 5, 5, 50])).tolist() == [False] * 4 + [True]
    assert not stats.outlier_mask(np.array([5.0, 5, 5, 5, 5])).any()


def test_summarize_drops_missing_and_handles_empty():
    s = stats.summarize([1.0, None, float("nan"), 3.0])
    assert s.n == 2 and s.median == 2.0
    empty = stats.summarize([])
    assert empty.n == 0 and math.isnan(empty.median) and empty.warnings == ("no samples",)
    one = stats.summarize([7])
    assert one.median == one.ci_lo == one.ci_hi == 7 and math.isnan(one.cv)


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
    t = stats.summary_table(pd.DataFrame(rows))
    bare = t[(t.backend == "bare") & (t.measurement == "startup")].iloc[0]
    assert bare["n"] == 5 and bare["median"] == 3 and bare["max"] == 5  # the warm-up's 1000 is not in
    assert bare["failed"] == 1 and "1 failed" in bare["warnings"]
    cont = t[t.backend == "container"].iloc[0]
    assert cont["n"] == 3 and "too few samples" in cont["warnings"]
    assert len(t[t.measurement == "cpu_quota"]) == 2  # one row per param value
    assert {"backend", "accel", "metric", "unit", "param_quota", "median", "ci_lo", "ci_hi", "cv",
            "outliers", "warnings", "failed"} <= set(t.columns)


def test_summary_table_series_that_only_failed():
    t = stats.summary_table(pd.DataFrame([_rows(value=None, status="failed")] * 2))
    assert t.iloc[0]["n"] == 0 and t.iloc[0]["failed"] == 2
    assert t.iloc[0]["warnings"] == "all 2 samples failed"


def test_linear_fit():
    slope, intercept, r2 = stats.linear_fit([0, 1, 2, 3, 4], [100, 98, 96, 94, 92])
    assert slope == pytest.approx(-2) and intercept == pytest.approx(100) and r2 == pytest.approx(1)
    _, _, r2_noisy = stats.linear_fit([0, 1, 2, 3, 4], [0, 2, 1, 4, 3])
    assert 0 < r2_noisy < 1
    with pytest.raises(ValueError, match="two distinct"):
        stats.linear_fit([1, 1], [2, 3])


def test_tests_separate_different_samples_and_not_equal_ones():
    rng = np.random.default_rng(7)
    a = rng.normal(10, 0.3, 20)
    assert stats.mann_whitney(a, a * 1.2) < 0.001
    assert stats.permutation_test(a, a * 1.2) < 0.01
    assert stats.mann_whitney(a, a) > 0.9
    assert stats.permutation_test(a, a) > 0.9
    assert stats.mann_whitney([3, 3, 3], [3, 3, 3]) == 1.0
    assert math.isnan(stats.mann_whitney([], [1.0]))


def test_ratio_of_medians():
    rng = np.random.default_rng(11)
    a = rng.normal(20, 0.5, 30)
    b = rng.normal(10, 0.25, 30)
    ratio, lo, hi = stats.ratio_of_medians(a, b)
    assert ratio == pytest.approx(np.median(a) / np.median(b))
    assert lo < ratio < hi and 1.9 < lo and hi < 2.1
    assert all(math.isnan(x) for x in stats.ratio_of_medians([1.0], [0.0]))
