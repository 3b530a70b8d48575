"""memory: the host memory one idle instance costs, and its overhead over the reference.

The footprint is summed over every host process the backend says belongs to
the instance (workload, runtime helpers, QEMU).  PSS is the fair share of
shared pages, USS what would be freed if the instance ended, RSS the upper
bound.  Overhead is the footprint minus that of the same workload run on the
backend declared as the memory reference (``memory_reference``, the host
process), measured once per run (median of a few launches) and cached in the
context.  A guest's own view of its memory comes from its runtime, as reported.
"""

from __future__ import annotations

import statistics
import time
from typing import TYPE_CHECKING, Any

import runtimes
from harness.measure.common import MIB, Footprint, Rows, footprint, guest_report, launch, reported
from harness.metric import LOWER, NONE, MeasurementInfo, Metric, declare, measurement
from runtimes.base import Backend, BackendError

if TYPE_CHECKING:  # pragma: no cover
    from harness.measure.context import Context
    from harness.results import Sample
    from harness.scenario import Case

declare(
    Metric("pss", "MiB", LOWER, "memory", headline=True, peer=True,
           description="proportional set size summed over the instance's host processes"),
    Metric("uss", "MiB", LOWER, "memory", peer=True, description="unique set size, summed"),
    Metric("rss", "MiB", LOWER, "memory", peer=True, description="resident set size, summed"),
    Metric("pss_overhead", "MiB", LOWER, "memory", headline=True,
           description="pss minus the memory reference's pss for the same workload"),
    Metric("uss_overhead", "MiB", LOWER, "memory", description="uss minus the reference's uss"),
    Metric("guest_mem_total", "MiB", NONE, "memory", description="MemTotal inside a guest"),
    Metric("guest_mem_used", "MiB", LOWER, "memory", description="MemTotal - MemAvailable inside a guest"),
)

#: bare launches whose median is the reference footprint
REFERENCE_LAUNCHES = 3


def measure_instance(backend: Backend, case: Case, ctx: Context) -> tuple[Footprint, dict[str, Any], str | None]:
    """Launch, wait ready, settle, read the footprint and the guest's report, stop."""
    inst = launch(backend, case, ctx)
    with inst:
        inst.wait_ready(case.timeout_s)
        time.sleep(case.settle_s)
        fp = footprint(inst.processes())
        report = guest_report(inst)
        accel = getattr(inst, "accel", None)
        inst.stop()
    if fp.processes == 0:
        raise BackendError(f"{backend.name} reported no live host process for {inst.name}")
    return fp, report, accel


def median_footprint(prints: list[Footprint]) -> Footprint:
    return Footprint(
        pss=int(statistics.median(p.pss for p in prints)),
        uss=int(statistics.median(p.uss for p in prints)),
        rss=int(statistics.median(p.rss for p in prints)),
        processes=int(statistics.median(p.processes for p in prints)),
    )


def reference_footprint(case: Case, ctx: Context) -> Footprint:
    """The memory reference's footprint of this case's workload: measured once per run, then cached."""
    key = ("memory.reference", case.workload.name, tuple(sorted(case.workload.bound().items())))
    if key not in ctx.cache:
        reference = ctx.open_backend(runtimes.memory_reference())
        ctx.cache[key] = median_footprint(
            [measure_instance(reference, case, ctx)[0] for _ in range(REFERENCE_LAUNCHES)])
    ref: Footprint = ctx.cache[key]
    return ref


@measurement(MeasurementInfo("memory", workload="idle"))
def memory(backend: Backend, case: Case, ctx: Context, repetition: int, warmup: bool) -> list[Sample]:
    ref = reference_footprint(case, ctx)
    fp, report, accel = measure_instance(backend, case, ctx)
    rows = Rows(backend, case, ctx, repetition, warmup, accel=accel)
    for metric, value in (("pss", fp.pss), ("uss", fp.uss), ("rss", fp.rss)):
        rows.add(metric, value / MIB)
    rows.add("pss_overhead", (fp.pss - ref.pss) / MIB)
    rows.add("uss_overhead", (fp.uss - ref.uss) / MIB)
    total, used = reported(report, "guest_mem_total"), reported(report, "guest_mem_used")
    if total is not None and used is not None:  # computed by the guest's runtime, stored as is
        note = "as the guest's /proc/meminfo reports it"
        rows.add("guest_mem_total", total, note=note)
        rows.add("guest_mem_used", used, note=note)
    return rows.samples
