"""Steps in a line of runs: the run-as-unit test between neighbours, corrected over the line.

A line is one series (backend, metric, case, host …) over its runs in time order, each run one
value (its median on the test's scale) with that value's sampling error (``harness.history.record``).
Runs fall into groups of neighbours that cannot be told apart -- the runs of one commit (``by``
commit), one kernel, one day, or each run alone.  Every boundary between two groups is a
candidate step, tested as ``isobench compare`` tests two sets of runs (``harness.stats.abtest.
measure_runs``): the ``window`` runs before it against the ``window`` runs after it, Student's t
on run values with the variance of a run's value estimated from those runs around their own
side's mean (and never below what the runs' own samples say), with its degrees of freedom.

The false-alarm rate is stated per line: the p-values of all its candidates are adjusted together
by Holm's method, which holds under any dependence between them (overlapping windows share
runs), so a line without a step shows one with probability at most ``alpha`` (5 %) -- a report
of 40 step-free lines shows about two.  A step is called where the adjusted p is below ``alpha``
*and* the change is beyond the margin (5 %, widened to the metric's resolution near 0), as
compare calls a regression; of neighbouring boundaries that all pass (the windows overlap the
step), the one with the smallest p is the step, and the first run after it is named.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from harness.history import WINDOW
from harness.metric import LOWER, NONE, ONE
from harness.stats import ALPHA, MIN_N_CI, THRESHOLD
from harness.stats.abtest import Effect, margin_of, measure_runs
from harness.stats.prior import Prior
from harness.stats.pvalues import adjust
from harness.stats.runs import ABS, LOG, Runs

CORRECTION = "holm"


@dataclass(frozen=True)
class Point:
    """One run of a line."""

    group: str  # the neighbours it cannot be told apart from (a commit, a kernel, a day, the run)
    value: float  # the run's median on the test's scale (``record.t_median``)
    se_log: float  # that median's standard error on the log scale (nan: too few samples)
    se_abs: float  # ... on the absolute scale
    n: int
    median: float  # the run's median as drawn


@dataclass(frozen=True)
class Step:
    index: int  # the first point after the step
    change: float  # relative change of the level (absolute for metrics judged by their distance from 1)
    lo: float  # its (1 - 2 alpha) interval
    hi: float
    p: float
    q: float  # Holm-adjusted over the line's candidates
    kind: str  # regression | improvement | step (a metric without a better direction)
    before: int  # runs in the window before it
    after: int  # ... after it


@dataclass(frozen=True)
class Candidate:
    index: int
    effect: Effect | None  # None: no test possible here (too few runs or samples)
    why: str = ""


def boundaries(points: Sequence[Point]) -> list[int]:
    """Indices where a new group begins."""
    return [i for i in range(1, len(points)) if points[i].group != points[i - 1].group]


def candidate(points: Sequence[Point], i: int, direction: str, window: int = WINDOW,
              alpha: float = ALPHA) -> Candidate:
    """The test of the ``window`` runs before index ``i`` against the ``window`` from ``i`` on."""
    before = [p for p in points[max(0, i - window):i] if math.isfinite(p.value)]
    after = [p for p in points[i:i + window] if math.isfinite(p.value)]
    if not before or not after or len(before) + len(after) < 3:
        return Candidate(i, None, "fewer than 3 runs around it")
    n_b, n_a = sum(p.n for p in before), sum(p.n for p in after)
    if min(n_b, n_a) < MIN_N_CI:
        return Candidate(i, None, f"too few samples (n={n_b} vs {n_a})")
    values = np.array([p.value for p in before + after])
    scale = LOG if direction != ONE and bool(np.all(values > 0)) else ABS
    b, a = (_runs(side, scale) for side in (before, after))
    ss = float(np.sum((b.medians - b.medians.mean()) ** 2) + np.sum((a.medians - a.medians.mean()) ** 2))
    df = b.k + a.k - 2
    var = ss / df
    within = np.concatenate([b.within, a.within])
    floor = float(np.nanmean(within)) if np.isfinite(within).any() else math.nan
    if math.isfinite(floor) and var < floor:  # a run's value is never known better than its own samples say
        var = floor
    medians = float(np.median([p.value for p in before])), float(np.median([p.value for p in after]))
    e = measure_runs(b, a, Prior(var, df), paired=False, medians=medians, n=(n_b, n_a), alpha=alpha,
                     one=direction == ONE)
    return Candidate(i, e)


def _runs(side: Sequence[Point], scale: str) -> Runs:
    v = np.array([p.value for p in side])
    se = np.array([p.se_log if scale == LOG else p.se_abs for p in side])
    return Runs(np.log(v) if scale == LOG else v, se ** 2, np.array([p.n for p in side]), scale)


def detect(points: Sequence[Point], direction: str, *, window: int = WINDOW, alpha: float = ALPHA,
           threshold: float = THRESHOLD, resolution: float = 0.0) -> list[Step]:
    """The steps of one line, in order (none where it has fewer than two groups)."""
    cands = [candidate(points, i, direction, window, alpha) for i in boundaries(points)]
    tested = [c for c in cands if c.effect is not None and math.isfinite(c.effect.p)]
    if not tested:
        return []
    qs = adjust([c.effect.p for c in tested if c.effect], CORRECTION)
    passing: list[tuple[Candidate, float]] = []
    for c, q in zip(tested, qs, strict=True):
        e = c.effect
        assert e is not None
        m = margin_of(e, threshold, resolution)
        if q < alpha and math.isfinite(e.change) and abs(e.change) > m:
            passing.append((c, float(q)))
    steps: list[Step] = []
    cluster: list[tuple[Candidate, float]] = []
    for item in passing:  # neighbouring boundaries that pass share the step: keep the smallest p
        if cluster and not _neighbours(points, cluster[-1][0].index, item[0].index, window):
            steps.append(_step(cluster, direction, points, window))
            cluster = []
        cluster.append(item)
    if cluster:
        steps.append(_step(cluster, direction, points, window))
    return steps


def _neighbours(points: Sequence[Point], i: int, j: int, window: int) -> bool:
    """Two boundaries whose windows overlap (fewer than ``window`` runs apart)."""
    return j - i < window


def _step(cluster: list[tuple[Candidate, float]], direction: str, points: Sequence[Point], window: int) -> Step:
    c, q = min(cluster, key=lambda t: (t[0].effect.p if t[0].effect else 1.0, t[0].index))
    e = c.effect
    assert e is not None
    worse = e.change > 0 if direction in (LOWER, ONE) else e.change < 0  # HIGHER: a fall is worse
    kind = "step" if direction == NONE else ("regression" if worse else "improvement")
    return Step(c.index, e.change, e.lo, e.hi, e.p, q, kind, min(window, c.index),
                min(window, len(points) - c.index))
