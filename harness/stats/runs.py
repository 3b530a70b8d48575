"""The run as the unit: one value per run (its median, on the test's scale) and how precisely
that run's own samples pin it down.

The samples of one run share that run's host state (page cache, pending teardown, the
neighbours' load), so two runs of one commit differ by more than their samples say.  A
random-effects model (Kalibera & Jones 2013; Georges et al. 2007) separates the two levels:

    median of run r  =  true value  +  run effect (variance tau², between runs)
                                    +  sampling error (variance w_r, within run r)

The variance of a run's median across runs, ``V = tau² + w``, is what a test of run medians
needs; it already holds the within-run part, so nothing here adds ``w`` a second time.  ``w``
on its own (``within``) serves two things only: carrying a calibration made at another
sample size over to these runs, and the one-run-a-side test that has no ``V`` at all.

Scales: durations and sizes are tested in logs (a run effect scales a latency), so a change
is relative; metrics judged by their distance from 1 (``ONE``) and series whose medians reach
0 or below are tested in their own units.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from harness.metric import ONE
from harness.stats.quantile import quantile_ci_ranks

LOG, ABS = "log", "abs"


def prepared(runs: Sequence[Sequence[float | None] | np.ndarray], direction: str) -> list[np.ndarray]:
    """Each run's values as a test sees them: finite floats, as distances from 1 for ONE metrics;
    runs left empty drop out."""
    out = []
    for r in runs:
        a = r.astype(float) if isinstance(r, np.ndarray) else np.asarray([v for v in r if v is not None], dtype=float)
        a = a[np.isfinite(a)]
        if a.size:
            out.append(np.abs(a - 1) if direction == ONE else a)
    return out


def scale_of(direction: str, *medians: np.ndarray) -> str:
    """LOG when every run median of every side is positive (and the metric is not judged by its
    distance from 1), else ABS."""
    if direction == ONE:
        return ABS
    return LOG if all(bool(np.all(m > 0)) for m in medians) else ABS


def median_sorted(s: np.ndarray) -> np.ndarray:
    """The median along the last axis of values sorted along it (np.median costs ~0.1 ms a call)."""
    n = s.shape[-1]
    h = n // 2
    return s[..., h] if n % 2 else (s[..., h - 1] + s[..., h]) / 2


def median_se(x: np.ndarray, scale: str, tick: float = 0.0, *, presorted: bool = False) -> np.ndarray:
    """Standard error of the median along the last axis, on ``scale``, from the width of the
    distribution-free 95 % interval (its ends widened by half the timer's ``tick``: a median read
    off a clock that counts in ticks is known to no better than that).  nan below ``MIN_N_CI``
    samples, and where a log scale meets a non-positive end.

    An interval of order statistics, not a bootstrap: it stays honest with ties, and a whole
    simulation's runs get it in one vectorised call."""
    x = np.asarray(x, dtype=float) if presorted else np.sort(np.asarray(x, dtype=float), axis=-1)
    ranks = quantile_ci_ranks(x.shape[-1])
    if ranks is None:
        return np.full(x.shape[:-1], np.nan)
    lo, hi = x[..., ranks[0] - 1] - tick / 2, x[..., ranks[1] - 1] + tick / 2
    z = 2 * 1.959963984540054  # the interval spans ~ +-1.96 standard errors (slightly more: >= 95 %)
    if scale == ABS:
        return (hi - lo) / z
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((lo > 0) & (hi > 0), (np.log(hi) - np.log(lo)) / z, np.nan)


@dataclass(frozen=True)
class Runs:
    """One side of a comparison, one value per run."""

    medians: np.ndarray  # each run's median, on ``scale``
    within: np.ndarray  # variance of each median from its own samples (nan below MIN_N_CI samples)
    n: np.ndarray  # samples per run
    scale: str

    @property
    def k(self) -> int:
        return int(self.medians.size)


def on_scale(v: np.ndarray | float, scale: str) -> np.ndarray:
    return np.log(v) if scale == LOG else np.asarray(v, dtype=float)


def sorted_runs(values: Sequence[np.ndarray]) -> tuple[list[np.ndarray], np.ndarray]:
    """Each run's values sorted, and each run's median."""
    if len({r.size for r in values}) == 1:  # one sort for all runs (a simulation's thousands)
        block = np.sort(np.stack(values), axis=1)
        return list(block), median_sorted(block)
    runs = [np.sort(r) for r in values]
    return runs, np.array([float(median_sorted(r)) for r in runs])


def runs_of(values: Sequence[np.ndarray], medians: np.ndarray, scale: str, tick: float = 0.0,
            extra: Sequence[float] | None = None) -> Runs:
    """The run-level view of one side, from each run's sorted values and median (``sorted_runs``).
    ``extra``: per run, a variance to add to its median's own -- a normalised run's values are
    divided by its reference's median, an estimate with a sampling error of its own, not a
    constant (``reference_within``)."""
    med = on_scale(medians, scale)
    if len({r.size for r in values}) == 1:
        within = median_se(np.stack(values), scale, tick, presorted=True) ** 2
    else:
        within = np.array([float(median_se(r, scale, tick, presorted=True)) ** 2 for r in values])
    if extra is not None:
        within = within + np.asarray(extra, dtype=float)
    return Runs(med, within, np.array([r.size for r in values]), scale)


def reference_within(reference: np.ndarray, tick: float = 0.0) -> float:
    """The sampling variance of log(median) of a reference series' run: what dividing by that
    median adds to the normalised run's value."""
    return float(median_se(reference, LOG, tick)) ** 2


def pooled_variance(*sides: np.ndarray) -> tuple[float, int]:
    """(variance, degrees of freedom) of run values around their own side's mean: the between-run
    variance of a run's median as these runs show it; (nan, 0) with one run a side."""
    df = sum(s.size - 1 for s in sides if s.size)
    if df <= 0:
        return math.nan, 0
    ss = sum(float(np.sum((s - s.mean()) ** 2)) for s in sides if s.size)
    return ss / df, df

