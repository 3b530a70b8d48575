"""What can make a series' median misleading besides its sample size: drift over the run, and
samples that fall into two well-separated clusters (the median then describes neither).

- **drift**: the last third of the run differs from the first by more than ``DRIFT`` and
  Spearman's rank correlation with the order says it is a trend (p < ``DRIFT_P``);
- **bimodal**: a two-means split in log space (each cluster >= ``BIMODAL_SHARE``) with
  Ashman's D > ``BIMODAL_D`` *and* an empty gap between the clusters wider than
  ``BIMODAL_GAP`` pooled standard deviations (a forced split of one normal sample already
  gives D ~ 2.6, hence both).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.stats.quantile import clean

#: a median interval wider than this (half-width, relative) is worth a warning
WIDE = 0.10
DRIFT = 0.10
DRIFT_P = 0.01
#: thirds of fewer than 3 samples say nothing
DRIFT_MIN_N = 9
BIMODAL_D = 4.0
BIMODAL_GAP = 1.5
BIMODAL_SHARE = 0.10
BIMODAL_MIN_N = 10


@dataclass(frozen=True)
class Drift:
    """How a series moved over the run: the median of its last third over that of its first."""

    change: float  # median(last third) / median(first third) - 1
    p: float  # Spearman's rank correlation of value with order, two-sided

    @property
    def trend(self) -> bool:
        """Large enough to state, and a trend rather than chance."""
        return abs(self.change) > DRIFT and self.p < DRIFT_P


def drift(values_in_order: Sequence[Any] | np.ndarray) -> Drift | None:
    """None below ``DRIFT_MIN_N`` samples."""
    from scipy import stats

    x = clean(values_in_order)
    if x.size < DRIFT_MIN_N:
        return None
    third = x.size // 3
    first, last = float(np.median(x[:third])), float(np.median(x[-third:]))
    if first == 0:
        return None
    if np.all(x == x[0]):
        return Drift(0.0, 1.0)
    rho = stats.spearmanr(np.arange(x.size), x)
    p = float(rho.pvalue) if np.isfinite(rho.pvalue) else 1.0
    return Drift(last / first - 1, p)


def bimodal(x: np.ndarray) -> tuple[tuple[float, float], tuple[float, float]] | None:
    """((median, share) of the low cluster, (median, share) of the high one), or None.

    Two-means in log space (latencies are multiplicative), split at the best
    threshold of the sorted values; separated when Ashman's D exceeds ``BIMODAL_D``.
    """
    if x.size < BIMODAL_MIN_N or np.any(x <= 0):
        return None
    v = np.sort(np.log(x))
    k_min = max(2, math.ceil(BIMODAL_SHARE * v.size))
    split = _best_split(v, k_min)
    if split < 0:
        return None
    a, b = v[:split], v[split:]
    spread = math.sqrt(a.var(ddof=1) + b.var(ddof=1))
    if spread == 0:
        return None
    ashman = math.sqrt(2) * abs(b.mean() - a.mean()) / spread
    gap = (b.min() - a.max()) / (spread / math.sqrt(2))
    if ashman <= BIMODAL_D or gap <= BIMODAL_GAP:
        return None
    return (float(np.exp(np.median(a))), a.size / v.size), (float(np.exp(np.median(b))), b.size / v.size)


def _cost(v: np.ndarray, k: int) -> float:
    a, b = v[:k], v[k:]
    return float(a.var() * a.size + b.var() * b.size)


def _best_split(v: np.ndarray, k_min: int) -> int:
    """The first k in [k_min, n - k_min] minimising the within-cluster sum of squares of v[:k] and
    v[k:] (sorted v), or -1.  Every split's cost from prefix sums of the centred values (O(n), not
    O(n²): a 42,000-value series took minutes), then the near-best few recomputed as the direct
    sums do, so ties and rounding pick the same k as summing each split."""
    n = v.size
    ks = np.arange(k_min, n - k_min + 1)
    if ks.size == 0:
        return -1
    c = v - v.mean()  # centred: no cancellation in sum(x²) - sum(x)²/k
    s1, s2 = np.cumsum(c), np.cumsum(c * c)
    left = s2[ks - 1] - s1[ks - 1] ** 2 / ks
    right = (s2[-1] - s2[ks - 1]) - (s1[-1] - s1[ks - 1]) ** 2 / (n - ks)
    cost = left + right
    near = ks[cost <= cost.min() + 1e-9 * max(abs(float(cost.min())), 1e-300) + 1e-12]
    best, split = math.inf, -1
    for k in near:
        exact = _cost(v, int(k))
        if exact < best:
            best, split = exact, int(k)
    return split
