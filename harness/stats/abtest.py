"""A/B statistics behind ``isobench compare``: one test per series, one correction, four verdicts.

Anchored on Firecracker's ``tools/ab_test.py`` (a permutation test per metric,
p < 0.01 uncorrected, and a relative-effect threshold below which a change is noise);
here the level applies *after* a correction across series (alpha = 0.05, a false
discovery rate of 5 %), which measured on this host's stored runs keeps two runs of one
commit silent and still catches a 15 % slower container at n = 30:

- the **effect** of a series is the relative change of its median,
  ``median(new) / median(base) - 1``; for metrics whose ideal is 1
  (``cpu_ratio``) it is the change of the median distance from 1, in absolute
  units (0.05 = five points further off);
- its **p-value** comes from the permutation test of the rank sum (Wilcoxon–
  Mann–Whitney, exact where small) when each side is one run, and from a
  hierarchical bootstrap (runs resampled, then samples within each run) when a
  side pools several runs, so run-to-run variance counts;
- the p-values of all judged series are adjusted together (Benjamini–Hochberg
  by default, Holm on request): fifty series at p < 0.05 each would otherwise
  raise a false alarm in nine runs out of ten;
- **run-to-run variation**: the samples of one run share that run's host state
  (page cache, pending namespace teardown, the neighbours' load), so two runs of one
  commit differ by more than their samples say: on this host a series' median moves
  by 2-12 % (sd of its log) between quiet back-to-back runs.  ``isobench compare
  --calibrate`` learns that standard deviation per series from A/A runs; compare
  then adds ``run_sd**2 / runs`` per side to the bootstrap variance of the change
  and tests it with a normal model in log units (a random-effects test, as when
  each run were one observation of a noisy quantity).  Uncalibrated, a test sees
  only the samples, and says so;
- the **margin** of a series is ``threshold`` (5 %), or the metric's absolute
  resolution for changes of medians near 0 (``harness.metric.UNIT_RESOLUTION``);
- verdicts: ``regression``/``improvement`` when the adjusted p is below alpha
  and the effect is beyond the margin; ``equivalent`` when the (1 - 2·alpha)
  interval of the effect lies within ±margin (TOST: two one-sided tests at
  alpha); ``inconclusive`` otherwise, including too few samples to tell.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from harness.metric import HIGHER, LOWER, NONE, ONE
from harness.stats import ALPHA, BOOTSTRAPS, MIN_N_CI, SEED, THRESHOLD
from harness.stats.pvalues import adjust, bootstrap_z_p, permutation_p
from harness.stats.resample import change_interval, change_of, hierarchical_changes

__all__ = ["ALPHA", "BOOTSTRAPS", "HIGHER", "LOWER", "MIN_N_CI", "NONE", "ONE", "SEED", "THRESHOLD", "Effect",
           "adjust", "detectable", "measure", "prepared", "verdict"]

REGRESSION, IMPROVEMENT, EQUIVALENT, INCONCLUSIVE = "regression", "improvement", "equivalent", "inconclusive"


@dataclass(frozen=True)
class Effect:
    """What one series did between base and new, before any correction across series."""

    base_median: float
    new_median: float
    change: float  # relative change of the median; for ONE, change of |median - 1|
    lo: float  # (1 - 2 alpha) interval of ``change`` (the TOST interval)
    hi: float
    p: float  # two-sided, uncorrected
    n_base: int
    n_new: int
    runs_base: int
    runs_new: int

    @property
    def enough(self) -> bool:
        return min(self.n_base, self.n_new) >= MIN_N_CI


def absolute(direction: str) -> bool:
    """Effects of ONE metrics are in absolute units (distance from 1); all others relative."""
    return direction == ONE


def prepared(runs: Sequence[Sequence[float]], direction: str) -> list[np.ndarray]:
    """Each run's values as a test sees them: finite floats, as distances from 1 for ONE metrics;
    runs left empty drop out (``calibrate`` reads runs through it too)."""
    out = []
    for r in runs:
        a = np.asarray([v for v in r if v is not None], dtype=float)
        a = a[np.isfinite(a)]
        if a.size:
            out.append(np.abs(a - 1) if direction == ONE else a)
    return out


def measure(base_runs: Sequence[Sequence[float]], new_runs: Sequence[Sequence[float]], direction: str,
            *, alpha: float = ALPHA, bootstraps: int = BOOTSTRAPS,
            seed: int = SEED, run_sd: float | None = None) -> Effect:
    """The effect of one series, its interval and its p-value (see the module doc).

    ``run_sd``: the series' run-to-run standard deviation learned from A/A runs (``calibrate``;
    of the log of a run's median, or of its distance from 1 for ONE metrics); None: unknown."""
    b_runs, n_runs = prepared(base_runs, direction), prepared(new_runs, direction)
    b = np.concatenate(b_runs) if b_runs else np.empty(0)
    n = np.concatenate(n_runs) if n_runs else np.empty(0)
    is_abs = absolute(direction)
    nan = math.nan
    if b.size == 0 or n.size == 0:
        return Effect(nan, nan, nan, nan, nan, nan, b.size, n.size, len(b_runs), len(n_runs))
    bm, nm = float(np.median(b)), float(np.median(n))
    change = float(change_of(b, n, is_abs))
    if not math.isfinite(change) or min(b.size, n.size) < MIN_N_CI:  # nothing a test could tell
        return Effect(bm, nm, change, nan, nan, nan, b.size, n.size, len(b_runs), len(n_runs))
    if run_sd is not None and (is_abs or min(bm, nm) > 0):  # known run-to-run variation: log units
        p, lo, hi = _with_run_variance(b, n, change, len(b_runs), len(n_runs), run_sd, is_abs, alpha, bootstraps,
                                       seed)
    elif len(b_runs) == 1 and len(n_runs) == 1:
        p = permutation_p(b, n)
        lo, hi = change_interval(b, n, is_abs, alpha, bootstraps, seed)
    else:
        draws = hierarchical_changes(b_runs, n_runs, is_abs, bootstraps, seed)
        p = bootstrap_z_p(draws)
        lo, hi = (float(v) for v in np.quantile(draws, [alpha, 1 - alpha]))
    return Effect(bm, nm, change, lo, hi, p, b.size, n.size, len(b_runs), len(n_runs))


def _with_run_variance(b: np.ndarray, n: np.ndarray, change: float, k_base: int, k_new: int, run_sd: float,
                       is_abs: bool, alpha: float, bootstraps: int, seed: int) -> tuple[float, float, float]:
    """(p, lo, hi) of a change whose standard error is the samples' (bootstrap, within runs) plus
    the run-to-run variance of each side's median, ``run_sd**2 / runs``: a normal model in log units
    (absolute units for ONE metrics).  Two runs of one commit then differ significantly as often as
    alpha says, not whenever the host moved between them -- which a test of the samples alone
    cannot see: a run's samples share its host state."""
    from scipy import stats

    z = float(stats.norm.ppf(1 - alpha))
    w_lo, w_hi = change_interval(b, n, is_abs, alpha, bootstraps, seed)
    if is_abs:
        d, se_w = change, (w_hi - w_lo) / (2 * z)
    else:
        d = math.log1p(change)
        se_w = (math.log1p(w_hi) - math.log1p(w_lo)) / (2 * z) if w_lo > -1 else math.inf
    se = math.sqrt((se_w if math.isfinite(se_w) else 0.0) ** 2 + run_sd ** 2 * (1 / k_base + 1 / k_new))
    if se == 0:
        return (1.0 if d == 0 else 0.0), change, change
    p = float(2 * stats.norm.sf(abs(d) / se))
    lo, hi = d - z * se, d + z * se
    return (p, lo, hi) if is_abs else (p, float(np.expm1(lo)), float(np.expm1(hi)))


def detectable(e: Effect, direction: str, alpha: float = ALPHA, power: float = 0.8) -> float:
    """The smallest change this comparison finds with probability ``power`` at ``alpha`` (two-sided,
    before the correction): ``(z_{1-alpha/2} + z_power)`` standard errors, the standard error read off
    the (1 - 2 alpha) interval of the change.  It tells "no change" from "could not have seen one":
    with one run a side on a host whose runs move by 5 %, it is ~20 %."""
    from scipy import stats

    if not (math.isfinite(e.lo) and math.isfinite(e.hi)):
        return math.nan
    z = float(stats.norm.ppf(1 - alpha))
    k = float(stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power))
    if absolute(direction):
        return k * (e.hi - e.lo) / (2 * z)
    if e.lo <= -1:
        return math.inf
    return math.expm1(k * (math.log1p(e.hi) - math.log1p(e.lo)) / (2 * z))


def verdict(e: Effect, q: float, direction: str, margin: float, alpha: float = ALPHA,
            resolution: float = 0.0) -> tuple[str, str]:
    """(verdict, why) of one series from its effect, its adjusted p ``q`` and its margin; a change of
    the median smaller than ``resolution`` (absolute, in the metric's unit) is no change, however
    large relative to a median near 0."""
    if not e.enough:
        return INCONCLUSIVE, (f"too few samples (n={e.n_base} vs {e.n_new}; "
                              f"a verdict needs at least {MIN_N_CI} a side)")
    if resolution > 0 and abs(e.new_median - e.base_median) <= resolution:
        return EQUIVALENT, f"the medians differ by less than the resolution ({resolution:g})"
    if not math.isfinite(e.change):
        return INCONCLUSIVE, "base median is 0: no relative change"
    worse = e.change > margin if direction in (LOWER, ONE) else e.change < -margin
    better = e.change < -margin if direction in (LOWER, ONE) else e.change > margin
    significant = math.isfinite(q) and q < alpha
    if significant and worse:
        return REGRESSION, ""
    if significant and better:
        return IMPROVEMENT, ""
    if math.isfinite(e.lo) and -margin <= e.lo and e.hi <= margin:
        return EQUIVALENT, ""
    if worse or better:
        return INCONCLUSIVE, f"beyond the margin but adjusted p={q:.2g} >= {alpha:g}"
    return INCONCLUSIVE, "interval reaches beyond ±margin"
