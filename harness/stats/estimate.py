"""A figure as the report states it: a median, or a ratio of two medians, with its 95 %
interval, or the reason it has none ("too few samples")."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.stats import MIN_N_CI
from harness.stats.quantile import clean, quantile_ci
from harness.stats.ratio import ratio_of_medians


@dataclass(frozen=True)
class Estimate:
    """A median (or a ratio of medians) with its 95 % interval; ``lo``/``hi`` are nan when
    ``unresolved`` says why there is none."""

    value: float
    lo: float
    hi: float
    n: int
    unresolved: str = ""

    @property
    def resolved(self) -> bool:
        return not self.unresolved and math.isfinite(self.lo) and math.isfinite(self.hi)

    @property
    def rel_halfwidth(self) -> float:
        """Half the interval's width relative to the value (0.1 = ±10 %); nan when unresolved."""
        if not self.resolved or self.value == 0:
            return math.nan
        return (self.hi - self.lo) / 2 / abs(self.value)


#: why a zero-width interval is not stated: the values tie at a resolution nobody declared
ZERO_WIDTH = "zero-width interval (tied values, resolution unknown)"


def median(values: Iterable[Any], tick: float = 0.0) -> Estimate:
    """The median with its distribution-free 95 % interval, widened by half the ``tick`` the values
    were read at; unresolved below ``MIN_N_CI`` samples and when the interval has width 0."""
    x = clean(values)
    if x.size == 0:
        return Estimate(math.nan, math.nan, math.nan, 0, "no samples")
    med = float(np.median(x))
    if x.size < MIN_N_CI:
        return Estimate(med, math.nan, math.nan, int(x.size), f"too few samples (n={x.size} < {MIN_N_CI})")
    lo, hi = quantile_ci(x, tick=tick)  # distribution-free order-statistic interval
    if lo == hi:
        return Estimate(med, math.nan, math.nan, int(x.size), ZERO_WIDTH)
    return Estimate(med, lo, hi, int(x.size))


def ratio(a: Iterable[Any], b: Iterable[Any], tick: float = 0.0) -> Estimate:
    """median(a) / median(b) with its 95 % interval; unresolved when either side is too small or the
    interval has width 0."""
    xa, xb = clean(a), clean(b)
    n = int(min(xa.size, xb.size))
    r, lo, hi = ratio_of_medians(xa, xb, tick=tick)
    if n < MIN_N_CI:
        return Estimate(r, math.nan, math.nan, n, f"too few samples (n={n} < {MIN_N_CI})")
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return Estimate(r, math.nan, math.nan, n, "no interval")
    if lo == hi:
        return Estimate(r, math.nan, math.nan, n, ZERO_WIDTH)
    return Estimate(r, lo, hi, n)
