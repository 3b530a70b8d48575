"""The change of a median between two samples, and its bootstrap interval (one run a side: both
samples resampled; from ``LARGE_N`` values a side the large-sample interval, ``harness.stats.large``)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import numpy as np


def change_of(base: np.ndarray, new: np.ndarray, is_abs: bool, axis: int = -1) -> np.ndarray:
    """The change of the median along ``axis``: relative, or absolute (``is_abs``, ONE metrics)."""
    b, n = np.median(base, axis=axis), np.median(new, axis=axis)
    if is_abs:
        return np.asarray(n - b)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray((n - b) / np.abs(b))


def change_interval(b: np.ndarray, n: np.ndarray, is_abs: bool, alpha: float, bootstraps: int,
                    seed: int) -> tuple[float, float]:
    """(1 - 2 alpha) interval of the change, both samples resampled (BCa; percentile where BCa cannot)."""
    from harness.stats import LARGE_N

    if np.all(b == b[0]) and np.all(n == n[0]):
        c = float(change_of(b, n, is_abs))
        return c, c
    if min(b.size, n.size) >= LARGE_N:
        from harness.stats.large import change_interval as large

        return large(b, n, is_abs, 1 - 2 * alpha)

    def stat(u: np.ndarray, v: np.ndarray, axis: int = -1) -> np.ndarray:
        return change_of(u, v, is_abs, axis)

    return two_sample_interval(b, n, stat, 1 - 2 * alpha, bootstraps, seed)


def two_sample_interval(a: np.ndarray, b: np.ndarray, stat: Callable[..., np.ndarray], confidence: float,
                        n_resamples: int, seed: int) -> tuple[float, float]:
    """The bootstrap interval of ``stat(a, b)`` resampling both samples: BCa, or percentile where
    BCa gives no finite ends (all resampled statistics equal, a degenerate jackknife); nan, nan
    when neither does."""
    from scipy import stats

    lo = hi = math.nan
    for method in ("BCa", "percentile"):
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # degenerate distributions: the result is checked instead
            ci = stats.bootstrap((a, b), stat, method=method, confidence_level=confidence,
                                 n_resamples=n_resamples, rng=seed, vectorized=True,
                                 batch=batch(n_resamples, a.size, b.size)).confidence_interval
        lo, hi = float(ci.low), float(ci.high)
        if math.isfinite(lo) and math.isfinite(hi):
            break
    return lo, hi


def batch(n_resamples: int, *sizes: int) -> int | None:
    """Resamples a bootstrap draws at once: all of them up to ``BATCH_VALUES`` values, else fewer."""
    from harness.stats import BATCH_VALUES

    largest = max(sizes)
    return None if n_resamples * largest <= BATCH_VALUES else max(1, BATCH_VALUES // largest)
