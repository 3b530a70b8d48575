"""Bootstrap distributions of the change of a median between two sides: one run a side
(both samples resampled), or several (runs resampled, then samples within each run)."""

from __future__ import annotations

import math
import warnings

import numpy as np

from harness.stats import BOOTSTRAPS, SEED


def change_of(base: np.ndarray, new: np.ndarray, is_abs: bool, axis: int = -1) -> np.ndarray:
    """The change of the median along ``axis``: relative, or absolute (``is_abs``, ONE metrics)."""
    b, n = np.median(base, axis=axis), np.median(new, axis=axis)
    if is_abs:
        return np.asarray(n - b)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray((n - b) / np.abs(b))


def change_interval(b: np.ndarray, n: np.ndarray, is_abs: bool, alpha: float, bootstraps: int,
                    seed: int) -> tuple[float, float]:
    """(1 - 2 alpha) interval of the change, both samples resampled (BCa; percentile where BCa cannot)."""
    from scipy import stats

    if np.all(b == b[0]) and np.all(n == n[0]):
        c = float(change_of(b, n, is_abs))
        return c, c

    def stat(u: np.ndarray, v: np.ndarray, axis: int = -1) -> np.ndarray:
        return change_of(u, v, is_abs, axis)

    lo = hi = math.nan
    for method in ("BCa", "percentile"):
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # degenerate distributions: the result is checked instead
            ci = stats.bootstrap((b, n), stat, method=method, confidence_level=1 - 2 * alpha,
                                 n_resamples=bootstraps, rng=seed, vectorized=True).confidence_interval
        lo, hi = float(ci.low), float(ci.high)
        if math.isfinite(lo) and math.isfinite(hi):
            break
    return lo, hi


def _pooled_medians(runs: list[np.ndarray], draws: int, rng: np.random.Generator) -> np.ndarray:
    """Medians of ``draws`` two-level resamples: runs with replacement, then samples within each run."""
    sizes = np.array([r.size for r in runs])
    width = int(sizes.max())
    padded = np.full((len(runs), width), np.nan)
    for i, r in enumerate(runs):
        padded[i, :r.size] = r
    pick = rng.integers(0, len(runs), size=(draws, len(runs)))  # which runs
    idx = (rng.random((draws, len(runs), width)) * sizes[pick][..., None]).astype(int)  # samples in each
    values = padded[pick[..., None], idx]
    values[np.arange(width)[None, None, :] >= sizes[pick][..., None]] = np.nan  # a run keeps its own size
    return np.nanmedian(values.reshape(draws, -1), axis=1)


def hierarchical_changes(b_runs: list[np.ndarray], n_runs: list[np.ndarray], is_abs: bool,
                         draws: int = BOOTSTRAPS, seed: int = SEED) -> np.ndarray:
    """Bootstrap draws of the change between two pools of runs, the run as a level."""
    rng = np.random.default_rng(seed)
    bm, nm = _pooled_medians(b_runs, draws, rng), _pooled_medians(n_runs, draws, rng)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = nm - bm if is_abs else (nm - bm) / np.abs(bm)
    return out[np.isfinite(out)]
