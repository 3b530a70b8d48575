"""From a soak's readings to its figures: start vs end, and the slope per 1,000 launches.

For each quantity (``sampler.Reading.values``): its value at the start (before the first
launch), after the warm-up and at the end, and the Theil–Sen slope per 1,000 launches with its
interval (``harness.stats.slope.theil_sen``: widened when the readings drift together, no
interval below 8 readings).  The warm-up -- the first ``WARMUP`` of the run's launches -- is
left out of the slope: lazy imports, a compiled seccomp filter, caches and a helper's first
requests grow a process once, which is not a leak; it is shown as start vs after warm-up.

A **leak** is a slope whose interval lies above 0 -- over the run after its warm-up and, since a
leak keeps growing, over the run's second half too.  A quantity whose slope is above 0 over the
run but not over its second half grew and **levelled off** (an allocator's arenas filling, a
bounded buffer): shown, not a leak, and a longer run tells the two apart better.  Judged are the
harness, its helpers and the run's own objects; the host-wide counts (every process's cgroups, mounts and proc-connector
sockets) move with whatever else runs on the host, so they are shown and not judged.

A helper's quantities are fitted against its own backend's launches, the harness's and the
host's against all launches of the run.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from harness.soak.sampler import HOST, Reading
from harness.stats.slope import theil_sen

#: the fraction of the run's launches left out of the slope (still shown as the start value)
WARMUP = 0.1
PER = 1000.0

LEAK, LEVELS, SHRINKS, FLAT, UNRESOLVED, SHOWN = ("LEAK", "levels off", "shrinks", "no slope", "not resolved",
                                                  "shown only")


@dataclass(frozen=True)
class Figure:
    quantity: str
    start: float
    warm: float  # the first reading after the warm-up
    end: float
    slope: float  # per 1,000 launches
    lo: float
    hi: float
    readings: int
    verdict: str
    drift: bool = False
    #: the slope over the second half of the readings after the warm-up, and its interval
    late: float = math.nan
    late_lo: float = math.nan
    late_hi: float = math.nan

    def row(self) -> str:
        def interval(lo: float, hi: float) -> str:
            return "—" if math.isnan(lo) else f"[{lo:+.3g}, {hi:+.3g}]"

        return (f"| {self.quantity} | {self.start:.6g} | {self.warm:.6g} | {self.end:.6g} | {self.slope:+.3g} "
                f"{interval(self.lo, self.hi)}{' (drift)' if self.drift else ''} | {self.late:+.3g} "
                f"{interval(self.late_lo, self.late_hi)} | {self.readings} | {self.verdict} |")


def _x(r: Reading, quantity: str) -> float:
    """Launches so far: the helper's own backend's, else the run's."""
    owner = quantity.rsplit("/", 2)[0] if quantity.count("/") >= 2 else ""
    return float(r.launches.get(owner, sum(r.launches.values())) if owner else sum(r.launches.values()))


def figure(quantity: str, readings: Sequence[Reading]) -> Figure | None:
    pts = [(_x(r, quantity), float(v)) for r in readings
           if (v := r.values.get(quantity)) is not None and math.isfinite(float(v))]
    if len(pts) < 2:
        return None
    cut = WARMUP * pts[-1][0]
    fit = [(x, y) for x, y in pts if x >= cut]
    start, warm, end = pts[0][1], fit[0][1], pts[-1][1]
    xs = [x / PER for x, _ in fit]
    if len(set(xs)) < 2:
        return Figure(quantity, start, warm, end, math.nan, math.nan, math.nan, len(pts), UNRESOLVED)
    if len({y for _, y in fit}) == 1:  # a count that never moved: exactly flat
        return Figure(quantity, start, warm, end, 0.0, 0.0, 0.0, len(fit),
                      SHOWN if quantity.startswith(HOST) else FLAT, late=0.0, late_lo=0.0, late_hi=0.0)
    s = theil_sen(xs, [y for _, y in fit])
    half = fit[len(fit) // 2:]
    late = theil_sen([x / PER for x, _ in half], [y for _, y in half]) if len({x for x, _ in half}) > 1 else None
    still_growing = late is not None and not late.why and late.lo > 0
    if quantity.startswith(f"{HOST}/"):
        verdict = SHOWN
    elif s.why:
        verdict = UNRESOLVED
    elif s.lo > 0:
        verdict = LEAK if still_growing else LEVELS
    elif s.hi < 0:
        verdict = SHRINKS
    else:
        verdict = FLAT
    return Figure(quantity, start, warm, end, s.slope, s.lo, s.hi, len(fit), verdict, s.drift,
                  *((late.slope, late.lo, late.hi) if late is not None else ()))


def figures(readings: Sequence[Reading]) -> list[Figure]:
    names = sorted({q for r in readings for q in r.values}, key=lambda q: (q.startswith(HOST), q))
    return [f for q in names if (f := figure(q, readings)) is not None]


def table(figs: Sequence[Figure]) -> str:
    head = (f"| quantity | start | after warm-up ({WARMUP:.0%}) | end | slope / 1,000 launches [95 %] "
            "| second half [95 %] | readings | verdict |\n|---|---:|---:|---:|---|---|---:|---|")
    return "\n".join([head, *(f.row() for f in figs)])


def leaks(figs: Sequence[Figure]) -> list[Figure]:
    return [f for f in figs if f.verdict == LEAK]
