"""density: host memory consumed per additional idle instance, resolved to ~1 MiB.

One repetition is a **ramp** and a **control ramp**, in alternating order: the
ramp starts instances one after another and holds them all, reading the host's
``MemAvailable`` before the first and after each one settled; the control
ramp does the same reads at the same pace and launches nothing, so it measures
what the host drifts by meanwhile (other processes, page cache, slab reclaim).
Each read first writes ``/proc/sys/vm/stat_refresh`` (``harness.measure.
accounting``), and a value counts as settled only when two refreshed reads
``SETTLE_INTERVAL_S`` apart agree within ``SETTLE_TOLERANCE``.

The slope is Theil–Sen (the median of the pairwise slopes, with its rank-based
95 % interval): robust to the one-off steps a least-squares line follows (a
35 MiB page-cache refill between two instances).  Each repetition stores its own
slope and interval; the last repetition also stores the slope of every ramp of
the case pooled (each ramp measured from its own start), with its interval and
whether it is **resolved** (interval no wider than the figure).  Beside it, the
instance's own accounting (``attributable_*``): PSS of its processes plus the
kernel memory charged to its cgroup, per instance, median over the ramp.
The page cache is never dropped: that would disturb everything else on the host.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from harness.measure import accounting, sharing
from harness.measure.common import MIB, Rows, launch
from harness.metric import LOWER, NONE, MeasurementInfo, Metric, Option, declare, measurement
from runtimes.base import Backend
from runtimes.wait import wait_until

if TYPE_CHECKING:  # pragma: no cover
    from harness.case import Case
    from harness.measure.context import Context
    from harness.results import Sample

declare(
    Metric("mem_available", "MiB", NONE, "density", summarised=False,
           description="MemAvailable with `instances` instances held (one point of the ramp)"),
    Metric("mem_available_control", "MiB", NONE, "density", summarised=False,
           description="MemAvailable at step `instances` of the control ramp, which launches nothing"),
    Metric("mem_charged", "MiB", NONE, "density", summarised=False,
           description="memory charged to the harness's cgroup (instances included) at that point"),
    Metric("density_charged_slope", "MiB/instance", LOWER, "density",
           description="Theil–Sen slope of mem_charged: the cost per instance by cgroup accounting"),
    Metric("density_charged_pooled", "MiB/instance", LOWER, "density",
           description="the charged slope of every ramp pooled (last repetition)"),
    Metric("density_charged_pooled_lo", "MiB/instance", NONE, "density", description="its 95 % interval"),
    Metric("density_charged_pooled_hi", "MiB/instance", NONE, "density", description="its 95 % interval"),
    Metric("density_slope", "MiB/instance", LOWER, "density", headline=True, peer=True,
           description="host memory consumed per additional instance (Theil–Sen slope of one ramp)"),
    Metric("density_slope_lo", "MiB/instance", NONE, "density", description="95 % interval of that slope"),
    Metric("density_slope_hi", "MiB/instance", NONE, "density", description="95 % interval of that slope"),
    Metric("density_control_slope", "MiB/instance", NONE, "density",
           description="the same slope on the control ramp: the host's drift per step"),
    Metric("density_pooled_slope", "MiB/instance", LOWER, "density",
           description="Theil–Sen slope of every ramp of the case pooled (stored with the last repetition)"),
    Metric("density_pooled_lo", "MiB/instance", NONE, "density", description="95 % interval of the pooled slope"),
    Metric("density_pooled_hi", "MiB/instance", NONE, "density", description="95 % interval of the pooled slope"),
    Metric("density_pooled_control", "MiB/instance", NONE, "density",
           description="the pooled slope of the control ramps"),
    Metric("density_resolved", "bool", NONE, "density",
           description="1 when the pooled interval is no wider than the pooled slope and the slope is not "
                       "negative, else 0 (its note says why)"),
    Metric("density_charged_resolved", "bool", NONE, "density",
           description="the same for the slope by the cgroup's charge (density_charged_pooled)"),
    Metric("attributable", "MiB", LOWER, "density",
           description="per instance: PSS of its processes + kernel memory charged to its cgroup"),
    Metric("attributable_pss", "MiB", LOWER, "density", description="per instance: PSS of its processes"),
    Metric("attributable_kernel", "MiB", LOWER, "density",
           description="per instance: kernel memory charged to its cgroup (none without a cgroup)"),
)

#: two refreshed reads this close (bytes) count as settled
SETTLE_TOLERANCE = 256 * 1024
#: pause between two reads of the adaptive settle
SETTLE_INTERVAL_S = 0.2


def settled_available(settle_s: float, read: Callable[[], int] = accounting.mem_available,
                      tolerance: int = SETTLE_TOLERANCE, interval: float = SETTLE_INTERVAL_S) -> int:
    """MemAvailable once two reads ``interval`` apart agree within ``tolerance``,
    or the last read when ``settle_s`` passed first."""
    reads: list[int] = []

    def steady() -> bool:
        reads.append(read())
        return len(reads) >= 2 and abs(reads[-1] - reads[-2]) <= tolerance

    wait_until(steady, settle_s, interval)
    return reads[-1]


DENSITY = MeasurementInfo(
    "density", title="Density", workload="idle", single_shot=True, images={},
    options={"instances": Option((int,), 1, 4096, 8, overridable=True)},  # the ramp's length
    charts=("harness.report.charts_memory:density",), findings=("harness.report.findings_density:density",))


def _instances(case: Case) -> int:
    """The ramp's length (the experiment's ``instances``, a backend's override applied)."""
    return int(case.options.get("instances", 0))


@measurement(DENSITY)
def density(backend: Backend, case: Case, ctx: Context, repetition: int, warmup: bool) -> list[Sample]:
    if _instances(case) < 1:
        raise ValueError(f"density needs instances >= 1, got {_instances(case)}")
    rows = Rows(backend, case, ctx, repetition, warmup)
    # alternate which comes first, so neither always runs on a host the other just disturbed
    files = backend.image_files(ctx.spec(backend, case.workload, case.limits, case.timeout_s))
    shared, shared_control = sharing.Reads(case.workload.image, files), sharing.Reads()  # the page cache, beside
    if repetition % 2 == 0:
        ramp, per_instance, pace = _ramp(backend, case, ctx, rows, shared)
        control = _control(case, pace, shared_control)
    else:
        control = _control(case, None, shared_control)
        ramp, per_instance, pace = _ramp(backend, case, ctx, rows, shared)
    for k, (r, c) in enumerate(zip(ramp, control, strict=True)):
        rows.add("mem_available", r / MIB, instances=k)
        rows.add("mem_available_control", c / MIB, instances=k)
    # imported here: numpy would swell the harness that every launch forks (fork cost ~ RSS)
    from harness.stats import slope

    ks = list(range(len(ramp)))
    one = slope.theil_sen(ks, [(ramp[0] - v) / MIB for v in ramp])
    rows.add("density_slope", one.slope, note=_slope_note(one))
    if not one.why:  # no interval below slope.MIN_POINTS: no rows, rather than a made-up one
        rows.add("density_slope_lo", one.lo)
        rows.add("density_slope_hi", one.hi)
    rows.add("density_control_slope", slope.theil_sen(ks, [(control[0] - v) / MIB for v in control]).slope)
    charged = per_instance.pop("charged")
    for metric, values in per_instance.items():
        if values:
            rows.add(metric, statistics.median(values) / MIB)
    if charged:
        for k, v in enumerate(charged):
            rows.add("mem_charged", v / MIB, instances=k)
        rows.add("density_charged_slope", slope.theil_sen(ks, [(v - charged[0]) / MIB for v in charged]).slope)
    sharing.add_rows(rows, shared, shared_control)
    if not warmup:
        _pool(rows, case, ctx, repetition, ramp, control, charged, shared)
    return rows.samples


def _ramp(backend: Backend, case: Case, ctx: Context, rows: Rows,
          shared: sharing.Reads) -> tuple[list[int], dict[str, list[int]], float]:
    """MemAvailable before and after each instance; each instance's own accounting (and
    ``charged``, the cgroup's count at each point); seconds per step.  ``shared`` reads the
    page cache at the same points."""
    points = [settled_available(case.settle_s)]
    shared.read()
    charged = [accounting.charged()]
    t0 = time.monotonic()
    own: dict[str, list[int]] = {"attributable_pss": [], "attributable_kernel": [], "attributable": [],
                                 "charged": []}
    # The ExitStack owns every instance: all are cleaned up, in reverse order,
    # whether the run completes, instance k fails to start, or Ctrl-C arrives.
    with contextlib.ExitStack() as stack:
        held = []
        for _ in range(_instances(case)):
            inst = stack.enter_context(launch(backend, case, ctx))
            rows.seen(inst)
            inst.wait_ready(case.timeout_s)
            held.append(inst)
            points.append(settled_available(case.settle_s))
            shared.read()
            charged.append(accounting.charged())
        pace = (time.monotonic() - t0) / _instances(case)
        shared.charge(held)
        for inst in held:  # read with all of them held, as MemAvailable was
            pss = accounting.pages(inst.processes()).pss
            kernel = accounting.kernel_memory(inst)
            own["attributable_pss"].append(pss)
            if kernel is not None:
                own["attributable_kernel"].append(kernel)
            own["attributable"].append(pss + (kernel or 0))
    if all(c is not None for c in charged):
        own["charged"] = [int(c) for c in charged if c is not None]
    return points, own, pace


def _control(case: Case, pace: float | None, shared: sharing.Reads) -> list[int]:
    """The same reads at the same pace (the ramp's, when known) with nothing launched."""
    points = [settled_available(case.settle_s)]
    shared.read()
    for _ in range(_instances(case)):
        t0 = time.monotonic()
        if pace:
            time.sleep(max(0.0, pace - case.settle_s))
        points.append(settled_available(case.settle_s))
        shared.read()
        pace = pace or (time.monotonic() - t0)
    return points


def _pool(rows: Rows, case: Case, ctx: Context, repetition: int, ramp: list[int], control: list[int],
          charged: list[int], shared: sharing.Reads) -> None:
    """Remember this ramp; with the case's last repetition, store the slope of all ramps pooled."""
    key = ("density.ramps", rows.backend.name, case.id)
    ramps: list[tuple[list[int], list[int], list[int], sharing.Reads]] = ctx.cache.setdefault(key, [])
    ramps.append((ramp, control, charged, shared))
    if repetition != case.repetitions - 1:
        return
    fit = pooled_fit([[v / MIB for v in r[0]] for r in ramps])
    drift = pooled_fit([[v / MIB for v in r[1]] for r in ramps])
    rows.add("density_pooled_slope", fit.slope, note=_slope_note(fit, f"{len(ramps)} ramps pooled"))
    if not fit.why:
        rows.add("density_pooled_lo", fit.lo)
        rows.add("density_pooled_hi", fit.hi)
    rows.add("density_pooled_control", drift.slope)
    rows.add("density_resolved", float(fit.resolved and fit.slope >= 0), note=unresolved(fit, "MemAvailable"))
    if all(r[2] for r in ramps):  # charged memory grows: negate to read as a drop
        by_cgroup = pooled_fit([[-v / MIB for v in r[2]] for r in ramps])
        rows.add("density_charged_pooled", by_cgroup.slope,
                 note=_slope_note(by_cgroup, f"{len(ramps)} ramps pooled"))
        if not by_cgroup.why:
            rows.add("density_charged_pooled_lo", by_cgroup.lo)
            rows.add("density_charged_pooled_hi", by_cgroup.hi)
        rows.add("density_charged_resolved", float(by_cgroup.resolved and by_cgroup.slope >= 0),
                 note=unresolved(by_cgroup, "the cgroup's charge"))
    sharing.pool(rows, [r[3] for r in ramps], pooled_fit)


def unresolved(fit: Any, method: str) -> str | None:
    """Why a pooled slope is no result (None when it is one): it has no interval, its interval is
    wider than the figure, or it is negative -- an instance costs no less than nothing; a negative
    slope says that memory left what was measured (page cache reclaimed or moved to another
    cgroup) faster than the instances added theirs, which hides their cost."""
    if fit.slope < 0:
        bounds = f" [{fit.lo:.2f}, {fit.hi:.2f}]" if not fit.why else ""
        return (f"not resolved: negative by {method} ({fit.slope:.2f} MiB/instance{bounds}): "
                f"memory left what was measured faster than the instances added theirs")
    if fit.why:
        return f"not resolved by {method}: {fit.why}"
    if not fit.resolved:
        return f"not resolved by {method}: the interval [{fit.lo:.2f}, {fit.hi:.2f}] is wider than the figure"
    return None


def _slope_note(s: Any, prefix: str = "") -> str | None:
    """``prefix``, then why a slope has no interval and whether its points drifted together
    (``harness.stats.slope``); None when there is nothing to say."""
    words = [w for w in (prefix, s.why, "the points drifted (they wander together)" if s.drift else "") if w]
    return "; ".join(words) or None


def pooled_fit(ramps: list[list[float]]) -> Any:
    """The slope of every ramp's (k, MiB dropped since its own k=0) points with the ramp as the unit
    (``harness.stats.slope.over_ramps``): what a ramp's points share -- the host's state while it
    ran -- counts once per ramp, not once per point.

    ``ramps`` holds MemAvailable in MiB, one list per repetition (index = instances held): also what
    a report passes from the stored ``mem_available`` rows."""
    from harness.stats import slope

    return slope.over_ramps([(list(range(len(r))), [float(r[0]) - float(v) for v in r]) for r in ramps])
