"""Where a backend sits among its peers: the findings' line that orders the peers around it.

From the report's peer ratios (``tables.peer_ratios``: median(peer) / median(reference) with a
BCa 95 % interval): a peer whose whole interval lies below 1 is below the reference (faster,
smaller), one whose interval lies above 1 is above it, and one whose interval holds 1, or that
has too few samples for an interval, is not resolved from it.  One line per reference, metric
and workload with at least two peers: "container among its peers, launch_to_ready (noop): above
bwrap 0.610× [0.550–0.660]; below oci:runsc (gVisor ptrace platform) 9.80× [9.10–10.5]; not
resolved from oci:crun 1.02× [0.950–1.10]".
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from harness.stats import MIN_N_CI
from harness.stats.estimate import Estimate
from harness.stats.numbers import PROSE, fmt

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd


def estimate(r: Any) -> Estimate:
    """A peer-ratio row as an estimate (no interval below ``MIN_N_CI`` samples a side)."""
    n = int(min(r["n_peer"], r["n_ref"]))
    return Estimate(r["ratio"], r["ci_lo"], r["ci_hi"], n, "" if n >= MIN_N_CI else "too few samples")


def _ratio(e: Estimate) -> str:
    if e.resolved:
        return f"{fmt(e.value, PROSE)}× [{fmt(e.lo, PROSE)}–{fmt(e.hi, PROSE)}]"
    return f"≈{fmt(e.value, PROSE)}×"


def lines(peers: pd.DataFrame) -> list[str]:
    """The placement lines of the peer-ratio table ``peers``."""
    if peers.empty:
        return []
    out = []
    for (ref, metric, workload), g in peers.groupby(["reference", "metric", "workload"], sort=False):
        rows = [r for _, r in g.sort_values("ratio").iterrows()]
        if len(rows) < 2:
            continue
        below: list[str] = []
        above: list[str] = []
        open_: list[str] = []
        for r in rows:
            e = estimate(r)
            text = f"{r['peer']} {_ratio(e)}"
            (below if e.resolved and e.hi < 1 else above if e.resolved and e.lo > 1 else open_).append(text)
        parts = ([f"above {', '.join(below)}"] if below else []) + ([f"below {', '.join(above)}"] if above else [])
        parts += [f"not resolved from {', '.join(open_)}"] if open_ else []
        out.append(f"{ref} among its peers, {metric} ({workload}): " + "; ".join(parts))
    return out
