"""Slopes: Theil–Sen (the median of pairwise slopes), robust to a step or an outlier that would tilt
a least-squares line (a page-cache refill between two instances), with an interval that holds
when the points are not independent.

- **Too few points**: below ``MIN_POINTS`` no interval is given (Sen's interval from 3 points
  covered 66 % and was "resolved" 39 % of the time).
- **Drift within a ramp**: the points of one ramp share the host's state, which wanders (an AR(1)
  process, or a random walk: a page cache that fills, reclaim that comes and goes).  Sen's
  interval assumes independent points and covered 74 % / 39 % under those.  When the residuals
  look correlated (von Neumann's ratio of their successive differences to their spread below
  ``DRIFT_WIDEN``), the interval becomes the hull of Sen's and the t interval of the mean step (the slope of a
  random walk with drift is exactly the mean of its steps); below ``DRIFT_STATED`` the slope says
  the ramp drifted.
- **Several ramps**: the ramp is the unit (``over_ramps``): each ramp's slope, their mean and a t
  interval with ramps - 1 degrees of freedom, so what a ramp's points share counts once, as it
  should, instead of once per point.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from harness.stats import CONFIDENCE

#: fewer points give no slope interval (simulated: Sen's interval under drift needs this many)
MIN_POINTS = 8
#: fewer ramps give no pooled interval
MIN_RAMPS = 3
#: von Neumann ratio below which the points are treated as correlated (the interval widened): above 1,
#: so that a random walk that happens to look independent is still caught (simulated: a printed
#: interval misses <= 6 % under a random walk at 8 points, 17 % of independent 17-point ramps widened) ...
DRIFT_WIDEN = 1.2
#: ... and below which the drift is stated (independent points fall below it ~2 % of the time at 17 points)
DRIFT_STATED = 0.5


@dataclass(frozen=True)
class Slope:
    """A robust slope with its interval; ``resolved`` is False when there is no interval (``why``) or
    it is wider than the figure."""

    slope: float
    lo: float
    hi: float
    intercept: float
    n: int  # points (one ramp) or ramps (``over_ramps``)
    why: str = ""
    drift: bool = False  # the points wandered together (stated beside the figure)

    @property
    def width(self) -> float:
        return self.hi - self.lo

    @property
    def resolved(self) -> bool:
        return not self.why and math.isfinite(self.width) and self.width <= abs(self.slope)


def von_neumann(residuals: np.ndarray) -> float:
    """Mean squared successive difference over twice the variance: ~1 for independent points, toward
    0 when neighbours move together (Durbin–Watson / 2)."""
    r = residuals - residuals.mean()
    ss = float(np.sum(r ** 2))
    if r.size < 3 or ss == 0:
        return 1.0
    return float(np.sum(np.diff(r) ** 2) / (r.size - 1)) / (2 * ss / (r.size - 2))


def _t_half(values: np.ndarray, confidence: float) -> float:
    from scipy import special

    k = values.size
    return float(special.stdtrit(k - 1, 0.5 + confidence / 2)) * float(np.std(values, ddof=1)) / math.sqrt(k)


def theil_sen(x: Sequence[float], y: Sequence[float], confidence: float = CONFIDENCE) -> Slope:
    """The Theil–Sen slope of one ramp with its interval (see the module doc); needs two distinct x."""
    from scipy import stats

    xa, ya = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(xa) & np.isfinite(ya)
    xa, ya = xa[keep], ya[keep]
    if xa.size < 2 or np.all(xa == xa[0]):
        raise ValueError("theil_sen: needs at least two distinct x values")
    order = np.argsort(xa, kind="stable")
    xa, ya = xa[order], ya[order]
    res = stats.theilslopes(ya, xa, alpha=confidence)
    slope, intercept, n = float(res.slope), float(res.intercept), int(xa.size)
    if n < MIN_POINTS:
        return Slope(slope, math.nan, math.nan, intercept, n, f"too few points for an interval (n={n} < {MIN_POINTS})")
    lo, hi = float(res.low_slope), float(res.high_slope)
    vn = von_neumann(ya - (slope * xa + intercept))
    if vn < DRIFT_WIDEN:
        steps = np.diff(ya) / np.diff(xa)
        m, h = float(steps.mean()), _t_half(steps, confidence)
        lo, hi = min(lo, m - h), max(hi, m + h)
    return Slope(slope, lo, hi, intercept, n, drift=vn < DRIFT_STATED)


def over_ramps(ramps: Sequence[tuple[Sequence[float], Sequence[float]]], confidence: float = CONFIDENCE) -> Slope:
    """The slope of several ramps with the ramp as the unit: the mean of their Theil–Sen slopes and a
    t interval over ramps (no interval below ``MIN_RAMPS``).  ``drift`` when most ramps drifted."""
    fits = [theil_sen(x, y, confidence) for x, y in ramps if len(x) >= 2]
    if not fits:
        raise ValueError("over_ramps: needs a ramp of two points or more")
    slopes = np.array([f.slope for f in fits])
    mean = float(slopes.mean())
    intercept = float(np.mean([f.intercept for f in fits]))
    drift = sum(f.drift for f in fits) * 2 > len(fits)
    if len(fits) < MIN_RAMPS:
        return Slope(mean, math.nan, math.nan, intercept, len(fits),
                     f"too few ramps for an interval ({len(fits)} < {MIN_RAMPS})", drift)
    h = _t_half(slopes, confidence)
    return Slope(mean, mean - h, mean + h, intercept, len(fits), drift=drift)
