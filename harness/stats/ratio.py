"""A ratio of two medians with a BCa bootstrap interval that resamples both samples
(``scipy.stats.bootstrap``), given only when both sides could carry a median interval themselves."""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from typing import Any

import numpy as np

from harness.stats import BOOTSTRAPS, CONFIDENCE, MIN_N_CI, SEED
from harness.stats.quantile import clean


def ratio_of_medians(a: Iterable[Any], b: Iterable[Any], *, confidence: float = CONFIDENCE,
                     n_resamples: int = BOOTSTRAPS, seed: int = SEED) -> tuple[float, float, float]:
    """median(a) / median(b) with a BCa bootstrap interval that resamples both samples.

    The ratio is nan when either sample is empty or median(b) is 0; the interval
    is nan when either side has fewer than ``MIN_N_CI`` values (a bootstrap of 3
    values has a handful of distinct medians and covers far less than it says).
    BCa corrects the bias and skew of a ratio; where it cannot (all resampled
    medians equal, a degenerate jackknife) the percentile interval stands in.
    """
    from scipy import stats

    xa, xb = clean(a), clean(b)
    if xa.size == 0 or xb.size == 0 or np.median(xb) == 0:
        return math.nan, math.nan, math.nan
    ratio = float(np.median(xa) / np.median(xb))
    if min(xa.size, xb.size) < MIN_N_CI:
        return ratio, math.nan, math.nan
    if np.all(xa == xa[0]) and np.all(xb == xb[0]):
        return ratio, ratio, ratio

    def stat(u: np.ndarray, v: np.ndarray, axis: int = -1) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.asarray(np.median(u, axis=axis) / np.median(v, axis=axis))

    lo = hi = math.nan
    for method in ("BCa", "percentile"):
        # scipy warns on a degenerate bootstrap distribution; the result is checked instead
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ci = stats.bootstrap((xa, xb), stat, method=method, confidence_level=confidence,
                                 n_resamples=n_resamples, rng=seed, vectorized=True).confidence_interval
        lo, hi = float(ci.low), float(ci.high)
        if math.isfinite(lo) and math.isfinite(hi):
            break
    return ratio, lo, hi
