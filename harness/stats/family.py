"""A comparison of many series at once: each series' variance of run medians from its own runs,
its calibration and the other series (``harness.stats.prior``), one test each
(``harness.stats.abtest``), one correction across all, a verdict and "sees >=" each.

The simulation suite (``tests/test_statistics_simulation.py``) calls ``judge`` directly:
the numbers in docs/statistics.md are this function's.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from harness.metric import NONE, ONE
from harness.stats import ALPHA, BOOTSTRAPS, MIN_N_CI, SEED, THRESHOLD
from harness.stats import prior as priors
from harness.stats.abtest import Effect, measure_runs, measure_samples, measure_within, verdict
from harness.stats.power import alpha_after_correction, sees
from harness.stats.prior import Prior
from harness.stats.pvalues import adjust
from harness.stats.runs import LOG, Runs, pooled_variance, prepared, runs_of, scale_of, sorted_runs


@dataclass(frozen=True)
class SeriesData:
    """One series of a comparison: its values, one sequence per run and side."""

    base: Sequence[Sequence[float] | np.ndarray]
    new: Sequence[Sequence[float] | np.ndarray]
    direction: str
    unit: str = ""
    tick: float = 0.0  # the timer's resolution (harness.metric)
    resolution: float = 0.0  # the smallest absolute change that means something (harness.metric)
    calibration: Prior | None = None  # the variance of a run's value learned from A/A runs ...
    calibration_scale: str | None = None  # ... on this scale (ignored where this comparison's differs)
    #: normalised runs: per run, the sampling variance of the log median of the reference they were divided by
    base_extra: Sequence[float] | None = None
    new_extra: Sequence[float] | None = None


@dataclass(frozen=True)
class Judged:
    effect: Effect | None  # None: a metric without a better direction
    q: float
    verdict: str
    why: str
    sees: float  # the smallest change this comparison finds as a regression 4 times in 5
    variance: Prior  # the variance of one run's value the test used (NONE for a test of samples)
    prior_df: float = 0.0  # of its degrees of freedom, those a calibration or the other series lent


@dataclass
class Family:
    judged: dict[Hashable, Judged]
    priors: dict[str, Prior] = field(default_factory=dict)  # the family prior per group of series
    alpha_eff: float = math.nan  # the level one series' p had to pass after the correction


@dataclass
class _Prepared:
    data: SeriesData
    base: Runs
    new: Runs
    pooled: tuple[np.ndarray, np.ndarray]
    own: Prior
    merged: Prior
    residual: np.ndarray


def _group(s: SeriesData, scale: str) -> str:
    """Series whose variances are alike enough to share a prior: logs of any unit; absolute units
    only with their own unit."""
    return LOG if scale == LOG else f"abs:{s.unit}"


def _prepare(s: SeriesData, paired: bool) -> _Prepared | None:
    b_runs, n_runs = prepared(s.base, s.direction), prepared(s.new, s.direction)
    if not b_runs or not n_runs:
        return None
    pooled = np.concatenate(b_runs), np.concatenate(n_runs)
    (b_sorted, b_med), (n_sorted, n_med) = sorted_runs(b_runs), sorted_runs(n_runs)
    scale = scale_of(s.direction, b_med, n_med)
    b = runs_of(b_sorted, b_med, scale, s.tick, s.base_extra)
    n = runs_of(n_sorted, n_med, scale, s.tick, s.new_extra)
    if paired and b.k == n.k and b.k > 1:
        diff = n.medians - b.medians
        own = Prior(float(np.var(diff, ddof=1)) / 2, b.k - 1)  # a difference holds two runs' variances
        residual = diff - diff.mean()
    else:
        var, df = pooled_variance(b.medians, n.medians)
        own = Prior(var, df)
        residual = np.concatenate([b.medians - b.medians.mean(), n.medians - n.medians.mean()])
    within = float(np.mean(np.concatenate([b.within, n.within])))
    usable = s.calibration is not None and s.calibration_scale in (None, scale)
    cal = s.calibration.at(within) if s.calibration is not None and usable else priors.NONE
    return _Prepared(s, b, n, pooled, own, priors.pool(own, cal), residual)


def _family_priors(prep: Mapping[Hashable, _Prepared], g_eff: float | None) -> dict[str, Prior]:
    """A prior per group, from the series' own (and calibrated) variances."""
    groups: dict[str, list[_Prepared]] = {}
    for p in prep.values():
        groups.setdefault(_group(p.data, p.base.scale), []).append(p)
    out = {}
    for name, members in groups.items():
        res = [p.residual for p in members if p.own.df > 0]
        eff = priors.effective_series(res) if len(res) >= 2 else g_eff
        out[name] = priors.squeeze([p.merged for p in members], eff)
    return out


def _effect(p: _Prepared, family: Prior, paired: bool, alpha: float, bootstraps: int,
            seed: int) -> tuple[Effect, Prior]:
    one = p.data.direction == ONE
    medians = float(np.median(p.pooled[0])), float(np.median(p.pooled[1]))
    n = int(p.pooled[0].size), int(p.pooled[1].size)
    post = priors.pool(p.merged, family)
    if post.usable:
        floor = float(np.mean(np.concatenate([p.base.within, p.new.within])))
        if math.isfinite(floor) and post.var < floor:  # a median is never known better than its own run says
            post = Prior(floor, post.df)
        return measure_runs(p.base, p.new, post, paired=paired and p.base.k == p.new.k, medians=medians, n=n,
                            alpha=alpha, one=one), post
    if p.data.base_extra is not None and p.base.k == p.new.k == 1:
        return measure_within(p.base, p.new, medians=medians, n=n, alpha=alpha, one=one), priors.NONE
    return measure_samples(p.pooled[0], p.pooled[1], one=one, tick=p.data.tick, alpha=alpha,
                           bootstraps=bootstraps, seed=seed), priors.NONE


def judge(series: Mapping[Hashable, SeriesData], *, paired: bool = False, threshold: float = THRESHOLD,
          alpha: float = ALPHA, correction: str = "bh", bootstraps: int = BOOTSTRAPS, seed: int = SEED,
          g_eff: float | None = None) -> Family:
    """Every series' effect, adjusted p, verdict and "sees >=".  ``g_eff``: the effective number of
    independent series a calibration found (used when these runs cannot tell: one a side)."""
    prep = {k: p for k, s in series.items() if s.direction != NONE and (p := _prepare(s, paired)) is not None}
    fam = _family_priors(prep, g_eff)
    effects: dict[Hashable, tuple[Effect, Prior]] = {}
    for k, p in prep.items():
        if min(p.pooled[0].size, p.pooled[1].size) < MIN_N_CI:
            effects[k] = _too_few(p), priors.NONE
        else:
            effects[k] = _effect(p, fam[_group(p.data, p.base.scale)], paired, alpha, bootstraps, seed)
    tested = [k for k, (e, _) in effects.items() if e.enough]
    qs = dict(zip(tested, adjust([effects[k][0].p for k in tested], correction), strict=True))
    a_eff = alpha_after_correction([effects[k][0].p for k in tested], alpha, correction)
    out: dict[Hashable, Judged] = {}
    for k, s in series.items():
        if k not in effects:
            out[k] = Judged(None, math.nan, "not judged", "no better direction", math.nan, priors.NONE)
            continue
        e, var = effects[k]
        q = qs.get(k, math.nan)
        v, why = verdict(e, q, s.direction, threshold, alpha, s.resolution)
        lent = max(var.df - prep[k].own.df, 0.0) if var.usable else 0.0
        out[k] = Judged(e, q, v, why, sees(e, s.direction, threshold, a_eff, s.resolution), var, lent)
    return Family(out, fam, a_eff)


def _too_few(p: _Prepared) -> Effect:
    nan = math.nan
    b, n = p.pooled
    return Effect(float(np.median(b)), float(np.median(n)), nan, nan, nan, nan, b.size, n.size, p.base.k, p.new.k,
                  why=f"too few samples (n={b.size} vs {n.size})")


def measure(base: Sequence[Sequence[float]], new: Sequence[Sequence[float]], direction: str, *,
            calibration: Prior | None = None, paired: bool = False, alpha: float = ALPHA,
            bootstraps: int = BOOTSTRAPS, seed: int = SEED, tick: float = 0.0) -> Effect:
    """One series judged on its own (no other series to lend it a variance): its effect."""
    j = judge({0: SeriesData(base, new, direction, tick=tick, calibration=calibration)}, paired=paired, alpha=alpha,
              bootstraps=bootstraps, seed=seed).judged[0]
    assert j.effect is not None, f"measure: direction {direction!r} has no better side"
    return j.effect
