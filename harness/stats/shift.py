"""The Hodges–Lehmann shift: the median of all differences between a new and a base value.

It is the estimate that matches the rank-sum test (the shift at which that test would be least
surprised), so it stands beside the ratio of medians in compare's table: where the two
disagree, the samples' shapes differ (one mode moved, a tail grew) and a single number says
little.  Relative metrics are shifted in logs (a ratio); metrics judged by their distance from
1 in their own units.
"""

from __future__ import annotations

import math

import numpy as np

#: above this many pairs, a seeded random subset of them (the estimate moves by far less than its error)
MAX_PAIRS = 250_000


def hodges_lehmann(base: np.ndarray, new: np.ndarray, *, relative: bool, seed: int = 0) -> float:
    """The median of ``new_j - base_i`` over all pairs: as a relative change (``exp - 1`` of the shift
    of logs) when ``relative``, else absolute; nan when a side is empty or a relative shift meets a
    value <= 0."""
    b, n = np.asarray(base, dtype=float), np.asarray(new, dtype=float)
    if b.size == 0 or n.size == 0 or relative and (np.any(b <= 0) or np.any(n <= 0)):
        return math.nan
    if relative:
        b, n = np.log(b), np.log(n)
    if b.size * n.size > MAX_PAIRS:
        rng = np.random.default_rng(seed)
        d = n[rng.integers(0, n.size, MAX_PAIRS)] - b[rng.integers(0, b.size, MAX_PAIRS)]
    else:
        d = (n[None, :] - b[:, None]).ravel()
    shift = float(np.median(d))
    return math.expm1(shift) if relative else shift
