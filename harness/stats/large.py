"""Intervals of a ratio or a change of two medians from large samples, without resampling.

A bootstrap of a median costs B resamples of n values, and BCa adds a jackknife of n x n: at
n = 42,000 (a million-row run's series) that is gigabytes a series.  From ``LARGE_N`` values a
side the median is close to normal, with the standard error its distribution-free 95 % interval
implies (``harness.stats.runs.median_se``, the same error a run's median carries in the run-level
test); a ratio and a relative change are taken on the log scale (a ratio of positive medians),
an absolute change (metrics judged by their distance from 1) on the values' own scale.
"""

from __future__ import annotations

import math

import numpy as np

from harness.stats.runs import ABS, LOG, median_se


def _z(confidence: float) -> float:
    from scipy import special

    return float(special.ndtri(1 - (1 - confidence) / 2))


def ratio_interval(a: np.ndarray, b: np.ndarray, confidence: float) -> tuple[float, float]:
    """The ``confidence`` interval of median(a) / median(b); nan where a median is not positive."""
    ma, mb = float(np.median(a)), float(np.median(b))
    if ma <= 0 or mb <= 0:
        return math.nan, math.nan
    se = math.hypot(float(median_se(a, LOG)), float(median_se(b, LOG)))
    h = _z(confidence) * se
    r = ma / mb
    return r * math.exp(-h), r * math.exp(h)


def change_interval(b: np.ndarray, n: np.ndarray, is_abs: bool, confidence: float) -> tuple[float, float]:
    """The ``confidence`` interval of the change of the median from ``b`` to ``n``: absolute
    (``is_abs``), else relative, (n - b) / |b|."""
    mb, mn = float(np.median(b)), float(np.median(n))
    z = _z(confidence)
    if is_abs:
        h = z * math.hypot(float(median_se(b, ABS)), float(median_se(n, ABS)))
        return mn - mb - h, mn - mb + h
    if mb > 0 and mn > 0:
        h = z * math.hypot(float(median_se(b, LOG)), float(median_se(n, LOG)))
        d = math.log(mn / mb)
        return math.expm1(d - h), math.expm1(d + h)
    if mb == 0:
        return math.nan, math.nan
    # medians at or below 0: the delta method on the values' own scale
    sb, sn = float(median_se(b, ABS)), float(median_se(n, ABS))
    c = (mn - mb) / abs(mb)
    h = z * math.sqrt(sn ** 2 + (mn / mb) ** 2 * sb ** 2) / abs(mb)
    return c - h, c + h
