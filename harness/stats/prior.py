"""Variances with their degrees of freedom, and how several estimates of one variance combine.

A variance estimated from k runs is worth k - 1 degrees of freedom, and a test that uses it
must use a t distribution with that many (a calibration from 3 runs used as if its variance
were known raised 11 % false alarms at a stated 5 %).  Estimates combine as chi-squared
information does: ``(d1 s1² + d2 s2²) / (d1 + d2)`` with ``d1 + d2`` degrees of freedom.

A calibration is one such estimate (a *prior*); the compared runs are another.  Across the
many series of one comparison, the series' variances are themselves a sample, and a prior
for each can be estimated from all of them (empirical Bayes, Smyth 2004, the "moderated t"
of limma): ``squeeze`` fits a scaled inverse chi-squared distribution to the series'
variances and returns it as a prior with ``d0`` degrees of freedom -- many when the series
agree, few when they differ.  ``d0`` is capped at the information the family holds: the
effective number of independent series (their run effects are correlated when the host moved
under all of them at once) times each one's degrees of freedom.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Prior:
    """An estimate of a variance with its degrees of freedom (``df`` may be inf); ``within``: the
    part of ``var`` that is the within-run sampling error of a run's median, where known."""

    var: float
    df: float
    within: float = math.nan

    @property
    def usable(self) -> bool:
        return self.df > 0 and math.isfinite(self.var) and self.var >= 0

    def at(self, within: float) -> Prior:
        """This variance of a run's median carried over to runs whose medians have ``within`` as
        their sampling error (other sample sizes): the between-run part stays, the within-run
        part is replaced -- never counted twice, never below the new runs' own."""
        if not (math.isfinite(self.within) and math.isfinite(within)):
            return self
        return Prior(max(self.var - self.within + within, within), self.df, within)


NONE = Prior(math.nan, 0.0)


def pool(*estimates: Prior) -> Prior:
    """The combined estimate of independent estimates of one variance."""
    use = [e for e in estimates if e.usable]
    if not use:
        return NONE
    if any(math.isinf(e.df) for e in use):
        inf = [e for e in use if math.isinf(e.df)]
        return Prior(float(np.mean([e.var for e in inf])), math.inf)
    df = sum(e.df for e in use)
    return Prior(sum(e.df * e.var for e in use) / df, df)


def _trigamma_inverse(x: float) -> float:
    """y with trigamma(y) = x (Smyth's Newton iteration, as limma's ``trigammaInverse``)."""
    from scipy import special

    if x > 1e7:
        return 1 / math.sqrt(x)
    if x < 1e-6:
        return 1 / x
    y = 0.5 + 1 / x
    for _ in range(50):
        tri = float(special.polygamma(1, y))
        dif = tri * (1 - tri / x) / float(special.polygamma(2, y))
        y += dif
        if -dif / y < 1e-8:
            break
    return y


def effective_series(residuals: Sequence[np.ndarray]) -> float:
    """How many independent series ``residuals`` (each series' run values around their side's
    mean, in the same run order) are worth: ``G / (1 + (G - 1) * mean correlation)``; G when
    their run effects are unrelated, 1 when the host moved them all together."""
    vecs = [r / np.linalg.norm(r) for r in residuals if r.size and np.linalg.norm(r) > 0]
    g = len(vecs)
    if g < 2:
        return float(g)
    width = min(v.size for v in vecs)
    u = np.stack([v[:width] for v in vecs])
    total = u.sum(axis=0)
    rho = (float(total @ total) - g) / (g * (g - 1))
    return g / (1 + (g - 1) * max(rho, 0.0))


def squeeze(estimates: Sequence[Prior], g_eff: float | None = None) -> Prior:
    """The family prior: a scaled inverse chi-squared fitted to the series' variances by the
    method of moments on their logs (Smyth 2004); ``NONE`` below three usable series.  Its
    degrees of freedom are at most ``g_eff`` (the effective number of independent series,
    default: all of them) times the series' mean degrees of freedom."""
    from scipy import special

    use = [e for e in estimates if e.usable and e.var > 0 and math.isfinite(e.df)]
    if len(use) < 3:
        return NONE
    s2 = np.array([e.var for e in use])
    d = np.array([e.df for e in use])
    e = np.log(s2) - special.digamma(d / 2) + np.log(d / 2)
    e_bar = float(e.mean())
    g = len(use)
    rhs = float(np.mean((e - e_bar) ** 2) * g / (g - 1) - np.mean(special.polygamma(1, d / 2)))
    d0 = 2 * _trigamma_inverse(rhs) if rhs > 0 else math.inf
    cap = (g if g_eff is None else min(g, g_eff)) * float(d.mean())
    d0 = min(d0, cap)
    s0 = math.exp(e_bar + float(special.digamma(d0 / 2)) - math.log(d0 / 2))
    return Prior(s0, d0)
