"""The one place the report asks ``harness.stats`` for numbers.

Findings, warnings and the headline chart need three things: the interval of
a median (or "too few samples" when none can be given), the interval of a
ratio of two medians, and the drift of a series over the run.  They ask here,
so that when ``harness.stats`` offers its own versions (order-statistic
intervals, drift) switching is one line per function.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness import stats

#: the smallest sample whose median has a 95 % order-statistic interval:
#: P(all n samples on one side of the median) = 2 * 0.5**n must be below 0.05
MIN_N = stats.MIN_N_CI


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


def clean(values: Iterable[Any]) -> np.ndarray:
    arr = np.asarray([v for v in values if v is not None], dtype=float)
    return arr[np.isfinite(arr)]


def median(values: Iterable[Any]) -> Estimate:
    x = clean(values)
    if x.size == 0:
        return Estimate(math.nan, math.nan, math.nan, 0, "no samples")
    med = float(np.median(x))
    if x.size < MIN_N:
        return Estimate(med, math.nan, math.nan, int(x.size), f"too few samples (n={x.size} < {MIN_N})")
    lo, hi = stats.quantile_ci(x)  # distribution-free order-statistic interval
    return Estimate(med, lo, hi, int(x.size))


def ratio(a: Iterable[Any], b: Iterable[Any]) -> Estimate:
    """median(a) / median(b) with its 95 % interval; unresolved when either side is too small."""
    xa, xb = clean(a), clean(b)
    n = int(min(xa.size, xb.size))
    r, lo, hi = stats.ratio_of_medians(xa, xb)
    if n < MIN_N:
        return Estimate(r, math.nan, math.nan, n, f"too few samples (n={n} < {MIN_N})")
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return Estimate(r, math.nan, math.nan, n, "no interval")
    return Estimate(r, lo, hi, n)


@dataclass(frozen=True)
class Drift:
    """How a series moved over the run: the median of its last third over that of its first."""

    change: float  # median(last third) / median(first third) - 1
    p: float  # Spearman's rank correlation of value with order, two-sided


def drift(values_in_order: Sequence[Any] | np.ndarray) -> Drift | None:
    """None below 9 samples (thirds of fewer than 3 samples say nothing)."""
    from scipy import stats as sps  # type: ignore[import-untyped,unused-ignore]

    x = clean(values_in_order)
    if x.size < 9:
        return None
    third = x.size // 3
    first, last = float(np.median(x[:third])), float(np.median(x[-third:]))
    if first == 0:
        return None
    if np.all(x == x[0]):
        return Drift(0.0, 1.0)
    rho = sps.spearmanr(np.arange(x.size), x)
    p = float(rho.pvalue) if np.isfinite(rho.pvalue) else 1.0
    return Drift(last / first - 1, p)
