"""p-values of the A/B test and their correction across series."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def permutation_p(b: np.ndarray, n: np.ndarray) -> float:
    """Two-sided p of the permutation test of the rank-sum statistic (Wilcoxon–Mann–Whitney).

    The permutation distribution of the rank sum is known exactly, so small samples get the
    exact test and large ones its normal limit with a tie correction (``scipy.stats.mannwhitneyu``,
    method ``auto``): p is never stuck at a Monte-Carlo floor of 1/(B + 1) that a correction over
    fifty series could not pass, and ranks keep one 2x outlier from deciding the verdict.  A
    permutation test of the difference of medians was measured here to be much weaker (8 vs 8
    values, fully separated: p = 0.035).
    """
    from scipy import stats

    if np.all(b == b[0]) and np.all(n == b[0]):
        return 1.0
    return float(stats.mannwhitneyu(b, n, alternative="two-sided", method="auto").pvalue)


def adjust(pvalues: Sequence[float], method: str = "bh") -> np.ndarray:
    """Family-wise adjusted p-values: Benjamini–Hochberg (``bh``) or Holm (``holm``); nan stays nan."""
    from scipy import stats

    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    if not ok.any():
        return out
    q = p[ok]
    if method == "bh":
        out[ok] = stats.false_discovery_control(q, method="bh")
    elif method == "holm":
        order = np.argsort(q)
        m = q.size
        stepped = np.maximum.accumulate((m - np.arange(m)) * q[order])
        adj = np.empty(m)
        adj[order] = np.minimum(stepped, 1.0)
        out[ok] = adj
    else:
        raise ValueError(f"unknown correction {method!r} (bh or holm)")
    return out
