"""density: host memory consumed per additional idle instance.

Instances are started one after another and all held; ``MemAvailable`` is
read before the first (k=0) and after each one settled.  The slope of a
straight line through (k, MemAvailable) is the marginal host memory per
instance; it includes what no per-process sum sees (page tables, kernel
objects, QEMU's guest RAM as it is touched).  The page cache is never
dropped: that would disturb everything else on the host.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from harness.measure.common import MIB, Rows, launch, mem_available
from harness.metric import LOWER, NONE, MeasurementInfo, Metric, declare, measurement
from runtimes.base import Backend
from runtimes.wait import wait_until

if TYPE_CHECKING:  # pragma: no cover
    from harness.measure.context import Context
    from harness.results import Sample
    from harness.scenario import Case

declare(
    Metric("mem_available", "MiB", NONE, "density", summarised=False,
           description="MemAvailable with `instances` instances held (one point of the curve)"),
    Metric("density_slope", "MiB/instance", LOWER, "density", headline=True, peer=True,
           description="host memory consumed per additional instance (least-squares slope)"),
    Metric("density_r2", "ratio", NONE, "density", description="R² of that line"),
    Metric("density_intercept", "MiB", NONE, "density", description="MemAvailable the line gives at 0"),
)

#: two reads this close (bytes) count as settled
SETTLE_TOLERANCE = MIB
#: pause between the two reads of the adaptive settle
SETTLE_INTERVAL_S = 0.25


def settled_available(settle_s: float, read: Callable[[], int] = mem_available,
                      tolerance: int = SETTLE_TOLERANCE, interval: float = SETTLE_INTERVAL_S) -> int:
    """MemAvailable once two reads ``interval`` apart agree within ``tolerance``,
    or the last read when ``settle_s`` passed first."""
    reads: list[int] = []

    def steady() -> bool:
        reads.append(read())
        return len(reads) >= 2 and abs(reads[-1] - reads[-2]) <= tolerance

    wait_until(steady, settle_s, interval)
    return reads[-1]


@measurement(MeasurementInfo("density", workload="idle", single_shot=True))
def density(backend: Backend, case: Case, ctx: Context, repetition: int, warmup: bool) -> list[Sample]:
    if case.instances < 1:
        raise ValueError(f"density needs instances >= 1, got {case.instances}")
    rows = Rows(backend, case, ctx, repetition, warmup)
    points = [settled_available(case.settle_s)]
    # The ExitStack owns every instance: all are cleaned up, in reverse order,
    # whether the run completes, instance k fails to start, or Ctrl-C arrives.
    with contextlib.ExitStack() as stack:
        for _ in range(case.instances):
            inst = stack.enter_context(launch(backend, case, ctx))
            rows.seen(inst)
            inst.wait_ready(case.timeout_s)
            points.append(settled_available(case.settle_s))
    ks = list(range(len(points)))
    mib = [p / MIB for p in points]
    for k, value in zip(ks, mib, strict=True):
        rows.add("mem_available", value, instances=k)
    # imported here: numpy would swell the harness that every launch forks (fork cost ~ RSS)
    from harness.stats import linear_fit

    slope, intercept, r2 = linear_fit(ks, mib)
    rows.add("density_slope", -slope)
    rows.add("density_r2", r2)
    rows.add("density_intercept", intercept)
    return rows.samples
