"""memory: the host memory one idle instance costs, and its overhead over the reference.

The footprint is summed over every host process the backend says belongs to
the instance (workload, runtime helpers, QEMU).  PSS is the fair share of
shared pages, USS what would be freed if the instance ended, RSS the upper
bound; beside them the anonymous memory, the private dirty pages (what the
instance wrote itself) and the kernel memory charged to its cgroup.

Overhead is like for like: the reference (the backend declared
``runtimes.reference()``, the host process) runs **the same file** the isolated
backends run — the rootfs copy of busybox, not the host's — with **the same
environment** (``runtimes.workloads.ISOLATED_ENV``), and it is measured **at
every repetition**, right before or right after the instance (alternating), so
the overhead of repetition i is the difference of two launches made seconds
apart.  A guest's own view of its memory comes from its runtime, as reported.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import runtimes
from harness.measure import accounting
from harness.measure.common import MIB, Rows, guest_report, reported
from harness.metric import LOWER, NONE, Headline, MeasurementInfo, Metric, declare, measurement
from runtimes import rootfs
from runtimes.base import Backend, BackendError
from runtimes.workloads import BUSYBOX, ISOLATED_ENV

if TYPE_CHECKING:  # pragma: no cover
    from harness.case import Case
    from harness.measure.context import Context
    from harness.results import Sample

declare(
    Metric("pss", "MiB", LOWER, "memory", headline=True, peer=True,
           description="proportional set size summed over the instance's host processes"),
    Metric("uss", "MiB", LOWER, "memory", peer=True, description="unique set size, summed"),
    Metric("rss", "MiB", LOWER, "memory", peer=True, description="resident set size, summed"),
    Metric("pss_overhead", "MiB", LOWER, "memory", headline=True,
           description="pss minus the memory reference's pss for the same workload"),
    Metric("uss_overhead", "MiB", LOWER, "memory", description="uss minus the reference's uss"),
    Metric("anon", "MiB", LOWER, "memory", description="anonymous memory of the instance's processes"),
    Metric("private_dirty", "MiB", LOWER, "memory", description="private dirty pages of its processes"),
    Metric("kernel_memory", "MiB", LOWER, "memory",
           description="kernel memory charged to the instance's cgroup (none without a cgroup)"),
    Metric("private_dirty_overhead", "MiB", LOWER, "memory",
           description="private_dirty minus the reference's, measured beside it"),
    Metric("guest_mem_total", "MiB", NONE, "memory", description="MemTotal inside a guest"),
    Metric("guest_mem_used", "MiB", LOWER, "memory", description="MemTotal - MemAvailable inside a guest"),
    Metric("guest_app_mem_used", "MiB", LOWER, "memory",
           description="MemTotal - MemAvailable inside an image's guest with its app running (after ready)"),
    Metric("guest_page_cache", "MiB", NONE, "memory",
           description="file pages in an image's guest's own page cache (Cached - Shmem, after ready): "
                       "the image's files this guest read, held by it alone"),
)



def measure_instance(backend: Backend, case: Case, ctx: Context,
                     **extra: Any) -> tuple[accounting.Pages, int | None, dict[str, Any], str | None]:
    """Launch, wait ready, settle, read the pages (one smaps_rollup read per process), kernel memory
    and the guest's report, stop."""
    inst = backend.launch(ctx.spec(backend, case.workload, case.limits, case.timeout_s, **extra))
    with inst:
        inst.wait_ready(case.timeout_s)
        time.sleep(case.settle_s)
        pages = accounting.pages(inst.processes())
        kernel = accounting.kernel_memory(inst)
        report = guest_report(inst)
        accel = getattr(inst, "accel", None)
        inst.stop()
    if pages.processes == 0:
        raise BackendError(f"{backend.name} reported no live host process for {inst.name}")
    return pages, kernel, report, accel


def reference_extra(case: Case) -> dict[str, Any]:
    """Launch options that make the reference run the isolated backends' file with their environment
    (an image workload: none, the reference runs the image's own files, with its own environment)."""
    if case.workload.image is not None:
        return {}
    busybox = rootfs.build() / BUSYBOX.lstrip("/")
    argv = [str(busybox), *case.workload.argv()[1:]]
    return {"argv": argv, "env": dict(ISOLATED_ENV)}


def reference_footprint(case: Case, ctx: Context) -> accounting.Pages:
    """The memory reference's footprint of this case's workload, launched like for like (one launch)."""
    reference = ctx.open_backend(runtimes.reference())
    pages, *_ = measure_instance(reference, case, ctx, **reference_extra(case))
    return pages


MEMORY = MeasurementInfo(
    "memory", title="Memory overhead", workload="idle", images={},
    charts=("harness.report.charts_memory:memory_overhead",),
    headline=Headline("pss", ("idle",), "host memory (PSS) of an idle instance", "memory (PSS, idle)"))


@measurement(MEMORY)
def memory(backend: Backend, case: Case, ctx: Context, repetition: int, warmup: bool) -> list[Sample]:
    is_reference = backend.name == runtimes.reference()
    extra = reference_extra(case) if is_reference else {}
    before = repetition % 2 == 0  # the reference alternates before / after the instance
    ref = reference_footprint(case, ctx) if before and not is_reference else None
    pages, kernel, report, accel = measure_instance(backend, case, ctx, **extra)
    if ref is None:
        ref = pages if is_reference else reference_footprint(case, ctx)
    rows = Rows(backend, case, ctx, repetition, warmup, accel=accel)
    for metric, value in (("pss", pages.pss), ("uss", pages.uss), ("rss", pages.rss), ("anon", pages.anon),
                          ("private_dirty", pages.private_dirty)):
        rows.add(metric, value / MIB)
    if kernel is not None:
        rows.add("kernel_memory", kernel / MIB)
    rows.add("pss_overhead", (pages.pss - ref.pss) / MIB)
    rows.add("uss_overhead", (pages.uss - ref.uss) / MIB)
    rows.add("private_dirty_overhead", (pages.private_dirty - ref.private_dirty) / MIB)
    total, used = reported(report, "guest_mem_total"), reported(report, "guest_mem_used")
    if total is not None and used is not None:  # computed by the guest's runtime, stored as is
        note = "as the guest's /proc/meminfo reports it"
        rows.add("guest_mem_total", total, note=note)
        rows.add("guest_mem_used", used, note=note)
    for key in ("guest_app_mem_used", "guest_page_cache"):  # an image's guest, asked after ready
        mib = reported(report, key)
        if mib is not None:
            rows.add(key, mib, note="as the guest's /proc/meminfo reports it with the app running")
    return rows.samples
