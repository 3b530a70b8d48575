"""Slopes: Theil–Sen (the median of pairwise slopes) with its rank-based interval
(``scipy.stats.theilslopes``), robust to a step or an outlier that would tilt a least-squares line."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from harness.stats import CONFIDENCE


@dataclass(frozen=True)
class Slope:
    """A robust slope with its interval; ``resolved`` is False when the interval is wider than the figure."""

    slope: float
    lo: float
    hi: float
    intercept: float
    n: int

    @property
    def width(self) -> float:
        return self.hi - self.lo

    @property
    def resolved(self) -> bool:
        return math.isfinite(self.width) and self.width <= abs(self.slope)


def theil_sen(x: Sequence[float], y: Sequence[float], confidence: float = CONFIDENCE) -> Slope:
    """Theil–Sen slope with its distribution-free interval.

    Robust to a step or an outlier that would tilt a least-squares line (a page-cache
    refill between two instances).  Needs two distinct x values.
    """
    from scipy import stats

    xa, ya = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(xa) & np.isfinite(ya)
    xa, ya = xa[keep], ya[keep]
    if xa.size < 2 or np.all(xa == xa[0]):
        raise ValueError("theil_sen: needs at least two distinct x values")
    res = stats.theilslopes(ya, xa, alpha=confidence)
    return Slope(float(res.slope), float(res.low_slope), float(res.high_slope), float(res.intercept),
                 int(xa.size))
