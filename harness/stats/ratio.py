"""A ratio of two medians with a BCa bootstrap interval that resamples both samples
(``scipy.stats.bootstrap``), given only when both sides could carry a median interval themselves;
from ``LARGE_N`` values a side, the large-sample interval (``harness.stats.large``)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from harness.stats import BOOTSTRAPS, CONFIDENCE, LARGE_N, MIN_N_CI, SEED
from harness.stats.quantile import clean
from harness.stats.resample import batch as batch  # (asked here too: tests/test_scale.py)
from harness.stats.resample import two_sample_interval


def ratio_of_medians(a: Iterable[Any], b: Iterable[Any], *, confidence: float = CONFIDENCE,
                     n_resamples: int = BOOTSTRAPS, seed: int = SEED, tick: float = 0.0) -> tuple[float, float, float]:
    """median(a) / median(b) with a BCa bootstrap interval that resamples both samples.

    The ratio is nan when either sample is empty or median(b) is 0; the interval
    is nan when either side has fewer than ``MIN_N_CI`` values (a bootstrap of 3
    values has a handful of distinct medians and covers far less than it says).
    BCa corrects the bias and skew of a ratio; where it cannot (all resampled
    medians equal, a degenerate jackknife) the percentile interval stands in.
    ``tick``: the resolution both samples were read at; each median is known to half a tick at
    best, so the interval's ends move out by that much on either median (ticks of 0.1 ms
    collapsed the interval of tied medians to a point).
    """
    xa, xb = clean(a), clean(b)
    if xa.size == 0 or xb.size == 0 or np.median(xb) == 0:
        return math.nan, math.nan, math.nan
    ratio = float(np.median(xa) / np.median(xb))
    if min(xa.size, xb.size) < MIN_N_CI:
        return ratio, math.nan, math.nan
    if np.all(xa == xa[0]) and np.all(xb == xb[0]):
        return (ratio, *_widened(ratio, ratio, float(np.median(xa)), float(np.median(xb)), tick))
    if min(xa.size, xb.size) >= LARGE_N:
        from harness.stats.large import ratio_interval

        return (ratio, *_widened(*ratio_interval(xa, xb, confidence), float(np.median(xa)), float(np.median(xb)),
                                 tick))

    def stat(u: np.ndarray, v: np.ndarray, axis: int = -1) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.asarray(np.median(u, axis=axis) / np.median(v, axis=axis))

    lo, hi = two_sample_interval(xa, xb, stat, confidence, n_resamples, seed)
    return (ratio, *_widened(lo, hi, float(np.median(xa)), float(np.median(xb)), tick))


def _widened(lo: float, hi: float, ma: float, mb: float, tick: float) -> tuple[float, float]:
    """The interval of ma / mb with each median off by up to half a tick."""
    if tick <= 0 or not (math.isfinite(lo) and math.isfinite(hi)):
        return lo, hi
    h = tick / 2
    down = (ma - h) / (mb + h) / (ma / mb) if mb + h > 0 else math.nan
    up = (ma + h) / (mb - h) / (ma / mb) if mb - h > 0 else math.inf
    return lo * min(down, 1.0), hi * max(up, 1.0)
