"""Statistics at scale (issue 27): the large-sample intervals agree with the bootstrap where they take
over, and the faster paths give the same answers as the direct ones (never a timing: that is
benchmarks/results_scale.py's)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.stats import BOOTSTRAPS, LARGE_N, large, quantile, resample, shape
from harness.stats.ratio import batch, ratio_of_medians


def _overlap(a: tuple[float, float], b: tuple[float, float]) -> float:
    """How much of the wider interval the two share."""
    inter = min(a[1], b[1]) - max(a[0], b[0])
    return inter / max(a[1] - a[0], b[1] - b[0])


def test_the_large_sample_intervals_agree_with_the_bootstrap_where_they_take_over() -> None:
    rng = np.random.default_rng(27)
    n = 1500  # the bootstrap's own path (below LARGE_N), both methods on the same data
    a, b = rng.lognormal(np.log(12), 0.1, n), rng.lognormal(np.log(4), 0.3, n)
    _, lo, hi = ratio_of_medians(a, b)
    assert _overlap((lo, hi), large.ratio_interval(a, b, 0.95)) > 0.85
    boot = resample.change_interval(b, a, False, 0.05, BOOTSTRAPS, 1)
    assert _overlap(boot, large.change_interval(b, a, False, 0.90)) > 0.85
    ones_b, ones_a = rng.normal(1.0, 0.02, n), rng.normal(1.01, 0.02, n)
    boot = resample.change_interval(np.abs(ones_b - 1), np.abs(ones_a - 1), True, 0.05, BOOTSTRAPS, 1)
    assert _overlap(boot, large.change_interval(np.abs(ones_b - 1), np.abs(ones_a - 1), True, 0.90)) > 0.8


def test_from_large_n_a_side_the_large_sample_interval_is_used() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.lognormal(1, 0.1, LARGE_N), rng.lognormal(0, 0.1, LARGE_N + 7)
    r, lo, hi = ratio_of_medians(a, b)
    assert (lo, hi) == pytest.approx(large.ratio_interval(a, b, 0.95)) and lo < r < hi
    assert resample.change_interval(b, a, False, 0.05, BOOTSTRAPS, 1) == pytest.approx(
        large.change_interval(b, a, False, 0.90))
    assert all(math.isnan(x) for x in large.ratio_interval(a - 10, b, 0.95))  # no log of a median <= 0


def test_bootstraps_of_stored_sizes_resample_at_once_and_large_ones_in_batches() -> None:
    assert batch(BOOTSTRAPS, 60, 60) is None and batch(BOOTSTRAPS, 500, 500) is None
    assert batch(BOOTSTRAPS, 1600, 1500) == 625


def _split_directly(v: np.ndarray, k_min: int) -> int:
    best, split = math.inf, -1
    for k in range(k_min, v.size - k_min + 1):
        a, b = v[:k], v[k:]
        cost = a.var() * a.size + b.var() * b.size
        if cost < best:
            best, split = cost, k
    return split


def test_the_bimodal_split_from_prefix_sums_is_the_split_of_the_direct_sums() -> None:
    rng = np.random.default_rng(5)
    for i in range(400):
        n = int(rng.integers(10, 300))
        x = [rng.lognormal(0, 0.1, n),
             np.concatenate([rng.lognormal(0, 0.05, n // 3), rng.lognormal(1, 0.05, n - n // 3)]),
             np.round(rng.lognormal(2, 0.1, n), 1),  # ties
             np.full(n, 3.0) + (rng.random(n) < 0.3)][i % 4]
        v = np.sort(np.log(x))
        k_min = max(2, math.ceil(shape.BIMODAL_SHARE * v.size))
        assert shape._best_split(v, k_min) == _split_directly(v, k_min)


def _ranks_directly(n: int, q: float, tail: float = 0.025) -> tuple[int, int] | None:
    from scipy import stats

    k = np.arange(n + 1)
    lows = np.nonzero(stats.binom.cdf(k, n, q)[:n] <= tail)[0]
    highs = np.nonzero(stats.binom.sf(k - 1, n, q)[1:] <= tail)[0] + 1
    return None if lows.size == 0 or highs.size == 0 else (int(lows[-1]) + 1, int(highs[0]))


@pytest.mark.parametrize("n", [quantile.WINDOWED_N, quantile.WINDOWED_N + 1, 2047, 5000, 42_001])
def test_median_ranks_found_near_the_quantile_are_the_ranks_over_every_rank(n: int) -> None:
    for q in (0.5, 0.1, 0.99):
        assert quantile._ranks_near(n, q, 0.025) == _ranks_directly(n, q)
