"""The A/B test of one series: its effect, the interval and p-value of that effect, its verdict.

Anchored on Firecracker's ``tools/ab_test.py`` (a test per metric and a relative-effect threshold
below which a change is noise), with the run as the unit (``harness.stats.runs``):

- the **effect** of a series is the relative change of its level, tested in logs (for metrics
  whose ideal is 1, ``cpu_ratio``, the change of the median distance from 1 in absolute units:
  0.05 = five points further off);
- **with a variance of run medians** -- from several runs a side, from a calibration (a prior
  with its own degrees of freedom), or borrowed from the other series of the comparison
  (``harness.stats.family``) -- the test is Student's t on run medians: unpaired (runs of
  each side around their own mean) or paired (``isobench ab``: B minus A per pair of runs, so
  drift cancels), with the degrees of freedom of that variance, never a normal model of an
  estimated variance;
- **with one run a side and nothing else** no run-to-run variance can be known: the test of
  the samples (the rank-sum permutation test, exact where small; with normalisation, the
  median ratios and their sampling error) is all there is, and the table says "uncalibrated"
  -- two runs of one commit differ by more than their samples say;
- p-values of all judged series are adjusted together (Benjamini–Hochberg by default, Holm on
  request); ``regression``/``improvement`` when the adjusted p is below alpha and the effect is
  beyond the margin; ``equivalent`` when the (1 - 2 alpha) interval lies within the margin
  (TOST); ``inconclusive`` otherwise -- too few samples, no spread to test against, a p that
  cannot be computed: never a p of 0 or of 1 in place of "undefined".

The **margin** is ``threshold`` (5 %), widened for medians near 0 to the metric's absolute
resolution (``harness.metric``): a change of seven pages of a near-zero memory overhead is no
"-300 %" change -- but only when the whole interval lies within it.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, replace

import numpy as np

from harness.metric import HIGHER, LOWER, NONE, ONE
from harness.stats import ALPHA, BOOTSTRAPS, MIN_N_CI, SEED, THRESHOLD
from harness.stats.prior import Prior
from harness.stats.pvalues import adjust, permutation_p
from harness.stats.resample import change_interval, change_of
from harness.stats.runs import ABS, LOG, Runs, prepared

__all__ = ["ALPHA", "BOOTSTRAPS", "HIGHER", "LOWER", "MIN_N_CI", "NONE", "ONE", "SEED", "THRESHOLD", "Effect",
           "adjust", "prepared", "verdict"]

REGRESSION, IMPROVEMENT, EQUIVALENT, INCONCLUSIVE = "regression", "improvement", "equivalent", "inconclusive"
RUNS, PAIRED, SAMPLES = "runs", "paired runs", "samples"
#: the spread of the samples' test stands for +-1.96 standard errors (a 95 % interval)
Z95 = 1.959963984540054


@dataclass(frozen=True)
class Effect:
    """What one series did between base and new, before any correction across series."""

    base_median: float  # of all base samples pooled
    new_median: float
    change: float  # relative change of the level; for ONE, change of |median - 1|
    lo: float  # (1 - 2 alpha) interval of ``change`` (the TOST interval)
    hi: float
    p: float  # two-sided, uncorrected; nan when no test could be made (``why``)
    n_base: int
    n_new: int
    runs_base: int
    runs_new: int
    se: float = math.nan  # standard error of the change on the test's scale
    df: float = math.inf  # degrees of freedom of its t (inf: normal)
    scale: str = LOG
    level: float = 1.0  # ABS scale: a change d is stated as d / level (1 where it is stated absolutely)
    test: str = ""  # RUNS | PAIRED | SAMPLES
    why: str = ""
    absolute: bool = False  # the change is in the metric's units (ONE metrics), not relative

    @property
    def enough(self) -> bool:
        return min(self.n_base, self.n_new) >= MIN_N_CI

    def stated(self, d: float) -> float:
        """A change on the test's scale as the table states it."""
        if self.scale == LOG:
            return math.expm1(d)
        return d / self.level if self.level else math.nan  # a relative change of a median of 0: none

    def on_scale(self, change: float) -> float:
        """The inverse of ``stated``: a stated change (a margin) on the test's scale."""
        return math.log1p(change) if self.scale == LOG else change * self.level


def t_quantile(q: float, df: float) -> float:
    """The ``q`` quantile of Student's t with ``df`` degrees of freedom (normal for inf); scipy's
    special functions, not ``scipy.stats``: a simulation calls this a million times."""
    from scipy import special

    return float(special.ndtri(q) if math.isinf(df) else special.stdtrit(df, q))


def t_p(d: float, se: float, df: float) -> float:
    """Two-sided p of t = d / se; nan when undefined (no spread, a non-finite input), never 0 for it."""
    from scipy import special

    if not (math.isfinite(d) and math.isfinite(se)) or se < 0 or not df > 0:
        return math.nan
    if se == 0:
        return 1.0 if d == 0 else math.nan
    t = abs(d) / se
    p = float(2 * (special.ndtr(-t) if math.isinf(df) else special.stdtr(df, -t)))
    return max(p, sys.float_info.min)  # underflow is not certainty: no finite sample gives p = 0


def _finish(e: Effect, d: float, half: float) -> Effect:
    if not math.isfinite(e.p) and not e.why:
        e = replace(e, why="no spread to test against" if e.se == 0 else "the test is undefined here")
    return replace(e, change=e.stated(d), lo=e.stated(d - half), hi=e.stated(d + half))


def measure_runs(base: Runs, new: Runs, var: Prior, *, paired: bool, medians: tuple[float, float],
                 n: tuple[int, int], alpha: float = ALPHA, one: bool = False) -> Effect:
    """Student's t on run values, given the (posterior) variance of one run's value ``var`` with its
    degrees of freedom; paired: B minus A per pair of runs (``isobench ab``)."""
    if paired:
        if base.k != new.k:
            raise ValueError(f"paired runs: {base.k} base runs but {new.k} new ones")
        d, c = float(np.mean(new.medians - base.medians)), 2 / base.k  # a pair's difference: two runs
    else:
        d, c = float(new.medians.mean() - base.medians.mean()), 1 / base.k + 1 / new.k
    se = math.sqrt(var.var * c)
    level = 1.0 if one or base.scale == LOG else abs(medians[0])
    e = Effect(medians[0], medians[1], math.nan, math.nan, math.nan, t_p(d, se, var.df), n[0], n[1], base.k,
               new.k, se, var.df, base.scale, level, PAIRED if paired else RUNS, absolute=one)
    return _finish(e, d, t_quantile(1 - alpha, var.df) * se)


def measure_within(base: Runs, new: Runs, *, medians: tuple[float, float], n: tuple[int, int],
                   alpha: float = ALPHA, one: bool = False) -> Effect:
    """One run a side, normalised: the difference of the two runs' values (each a median over its
    reference's) against the sampling error of all four medians; the run-to-run variation stays
    unknown ("uncalibrated")."""
    d = float(new.medians[0] - base.medians[0])
    se = math.sqrt(float(base.within[0] + new.within[0]))
    level = 1.0 if one or base.scale == LOG else abs(medians[0])
    e = Effect(medians[0], medians[1], math.nan, math.nan, math.nan, t_p(d, se, math.inf), n[0], n[1], 1, 1,
               se, math.inf, base.scale, level, SAMPLES, absolute=one)
    return _finish(e, d, t_quantile(1 - alpha, math.inf) * se)


def measure_samples(b: np.ndarray, n: np.ndarray, *, one: bool, tick: float = 0.0, alpha: float = ALPHA,
                    bootstraps: int = BOOTSTRAPS, seed: int = SEED) -> Effect:
    """One run a side: the rank-sum permutation test of the samples and a bootstrap interval of the
    change of the median (widened by the timer's tick: medians read in ticks are known to no better).
    Exact for what it tests -- the samples -- and blind to the run-to-run variation."""
    bm, nm = float(np.median(b)), float(np.median(n))
    change = float(change_of(b, n, one))
    lo, hi = change_interval(b, n, one, alpha, bootstraps, seed)
    if tick > 0:
        widen = tick if one else tick / abs(bm) if bm else math.inf
        lo, hi = lo - widen, hi + widen
    z = t_quantile(1 - alpha, math.inf)
    if one:
        se, scale, level = (hi - lo) / (2 * z), ABS, 1.0
    elif lo > -1:
        se, scale, level = (math.log1p(hi) - math.log1p(lo)) / (2 * z), LOG, 1.0
    else:
        se, scale, level = (hi - lo) * abs(bm) / (2 * z), ABS, abs(bm)
    p = permutation_p(b, n)
    return Effect(bm, nm, change, lo, hi, p, b.size, n.size, 1, 1, se, math.inf, scale, level, SAMPLES,
                  "" if math.isfinite(lo) and math.isfinite(hi) else "no interval", absolute=one)


def margin_of(e: Effect, margin: float, resolution: float) -> float:
    """The margin a change must exceed, widened to the metric's absolute ``resolution`` (relative to
    the base median for relative changes): near 0 a few pages are a large fraction."""
    if resolution <= 0:
        return margin
    if e.absolute:
        return max(margin, resolution)
    base = abs(e.base_median)
    return max(margin, resolution / base) if base > 0 else math.inf


def verdict(e: Effect, q: float, direction: str, margin: float, alpha: float = ALPHA,
            resolution: float = 0.0) -> tuple[str, str]:
    """(verdict, why) of one series from its effect, its adjusted p ``q`` and its margin; the margin
    is at least the metric's ``resolution`` (absolute, in the metric's unit)."""
    if not e.enough:
        return INCONCLUSIVE, (f"too few samples (n={e.n_base} vs {e.n_new}; "
                              f"a verdict needs at least {MIN_N_CI} a side)")
    if not math.isfinite(e.change):
        return INCONCLUSIVE, "base median is 0: no relative change"
    m = margin_of(e, margin, resolution)
    worse = e.change > m if direction in (LOWER, ONE) else e.change < -m
    better = e.change < -m if direction in (LOWER, ONE) else e.change > m
    significant = math.isfinite(q) and q < alpha
    if significant and worse:
        return REGRESSION, ""
    if significant and better:
        return IMPROVEMENT, ""
    if math.isfinite(e.lo) and math.isfinite(e.hi) and -m <= e.lo and e.hi <= m:
        if m > margin and abs(e.new_median - e.base_median) <= resolution:
            return EQUIVALENT, f"the medians differ by less than the resolution ({resolution:g})"
        return EQUIVALENT, ""
    if not math.isfinite(e.p):
        return INCONCLUSIVE, e.why or "no test"
    if worse or better:
        return INCONCLUSIVE, f"beyond the margin but adjusted p={q:.2g} >= {alpha:g}"
    return INCONCLUSIVE, "interval reaches beyond ±margin"
