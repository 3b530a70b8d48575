"""memory: the host memory one idle instance costs, and its overhead over bare.

The footprint is summed over every host process the backend says belongs to
the instance (workload, runtime helpers, QEMU).  PSS is the fair share of
shared pages, USS what would be freed if the instance ended, RSS the upper
bound.  Overhead is the footprint minus that of the same workload run bare,
measured once per run (median of a few launches) and cached in the context.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping
from typing import Any

import runtimes
from harness.measure import measurement
from harness.measure.common import (
    MIB,
    Footprint,
    Rows,
    footprint,
    guest_report,
    launch,
    lookup,
    parse_size,
)
from harness.measure.context import Context
from harness.results import Sample
from harness.scenario import Case
from runtimes.base import Backend, BackendError

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


def bare_reference(case: Case, ctx: Context) -> Footprint:
    """The bare footprint of this case's workload: measured once per run, then cached."""
    key = ("memory.bare_reference", case.workload.name, tuple(sorted(case.workload.bound().items())))
    if key not in ctx.cache:
        bare = runtimes.get("bare")
        ctx.cache[key] = median_footprint(
            [measure_instance(bare, case, ctx)[0] for _ in range(REFERENCE_LAUNCHES)])
    ref: Footprint = ctx.cache[key]
    return ref


def guest_memory(report: Mapping[str, Any]) -> tuple[int, int] | None:
    """(total, used) bytes from a guest's /proc/meminfo-like report; None without one.

    The vm guest's init reports ``guest_mem_total_kib``/``guest_mem_available_kib``
    (read before the workload starts); other spellings (MemTotal, mem_total_kb)
    are accepted too, as is the
    value's form ("262144 kB", 262144 meaning kB as /proc/meminfo writes it).
    """
    total = parse_size(lookup(report, "guest_mem_total_kib", "MemTotal", "mem_total", "mem_total_kb"))
    if total is None:
        return None
    avail = parse_size(lookup(report, "guest_mem_available_kib", "MemAvailable", "mem_available",
                              "mem_available_kb", "MemFree", "mem_free", "mem_free_kb"))
    if avail is None:
        return None
    return total, total - avail


@measurement("memory")
def memory(backend: Backend, case: Case, ctx: Context, repetition: int, warmup: bool) -> list[Sample]:
    ref = bare_reference(case, ctx)
    fp, report, accel = measure_instance(backend, case, ctx)
    rows = Rows(backend, case, ctx, repetition, warmup, accel=accel)
    for metric, value in (("pss", fp.pss), ("uss", fp.uss), ("rss", fp.rss)):
        rows.add(metric, value / MIB, "MiB")
    rows.add("pss_overhead", (fp.pss - ref.pss) / MIB, "MiB")
    rows.add("uss_overhead", (fp.uss - ref.uss) / MIB, "MiB")
    guest = guest_memory(report)
    if guest is not None:
        note = "as the guest's /proc/meminfo reports it"
        rows.add("guest_mem_total", guest[0] / MIB, "MiB", note=note)
        rows.add("guest_mem_used", guest[1] / MIB, "MiB", note=note)
    return rows.samples
