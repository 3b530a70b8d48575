"""What a comparison could have seen, and how many runs it takes to see more.

"sees >=" is the smallest true change that the test actually run calls a *regression* with
probability ``POWER``: the estimate must land beyond the margin *and* beyond the critical
value of its t (with its degrees of freedom) at the level the correction across series left
this series -- ``max(margin, t_crit * se) + t_power * se`` on the test's scale.  It tells "no
change" from "could not have seen one"; a simulation test checks that a change of that size
is found about ``POWER`` of the time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from harness.metric import HIGHER
from harness.stats.abtest import Effect, margin_of, t_quantile
from harness.stats.pvalues import adjust

POWER = 0.8
#: the most runs a side a plan proposes; beyond it the line says so
MAX_RUNS = 40


def alpha_after_correction(pvalues: Sequence[float], alpha: float, correction: str = "bh") -> float:
    """The level one more discovery's p must pass, given the discoveries the family already has:
    Benjamini–Hochberg ``(r + 1) alpha / m``, Holm ``alpha / (m - r)`` (``r`` discoveries among ``m``)."""
    p = np.asarray([v for v in pvalues if math.isfinite(v)], dtype=float)
    m = p.size
    if m == 0:
        return alpha
    r = int(np.sum(adjust(p.tolist(), correction) < alpha))
    if correction == "holm":
        return alpha / max(m - r, 1)
    return min(r + 1, m) * alpha / m


def needed(se: float, df: float, margin: float, alpha_eff: float, power: float = POWER) -> float:
    """The true change (on the test's scale) found beyond ``margin`` and significant at ``alpha_eff``
    (two-sided) with probability ``power``."""
    if not (math.isfinite(se) and se >= 0 and df > 0):
        return math.nan
    return max(margin, t_quantile(1 - alpha_eff / 2, df) * se) + t_quantile(power, df) * se


def sees(e: Effect, direction: str, margin: float, alpha_eff: float, resolution: float = 0.0,
         power: float = POWER) -> float:
    """The smallest change (as the table states changes: relative, or absolute for ONE metrics) this
    comparison calls a regression with probability ``power``; a drop for HIGHER metrics."""
    if not e.enough or not math.isfinite(e.se):
        return math.nan
    m = margin_of(e, margin, resolution)
    if not math.isfinite(m):
        return math.nan
    sign = -1.0 if direction == HIGHER else 1.0
    d = needed(e.se, e.df, abs(e.on_scale(sign * m)), alpha_eff, power)
    return abs(e.stated(sign * d))


def plan(var: float, prior_df: float, target: float, margin: float, alpha_eff: float, *, paired: bool,
         power: float = POWER) -> int | None:
    """The fewest runs a side with which a relative change of ``target`` is seen (``sees <= target``),
    given the variance ``var`` of one run's log median and the degrees of freedom a calibration
    or the family lends (``prior_df``); None when ``target`` does not exceed the margin or more
    than ``MAX_RUNS`` would be needed."""
    if not (target > margin and math.isfinite(var) and var >= 0):
        return None
    goal, m = math.log1p(target), math.log1p(margin)
    for k in range(2, MAX_RUNS + 1):
        df = prior_df + (k - 1 if paired else 2 * k - 2)
        if needed(math.sqrt(var * 2 / k), df, m, alpha_eff, power) <= goal:
            return k
    return None
