"""mem_limit, pids_limit (cpu_quota: ``harness.measure.cpu``): does the backend enforce the limit?

Each reads the enforcement mechanism's own counters through ``inst.usage()``
(a cgroup for bare/container; for guests, a cgroup of the guest's own kernel
whose counters the guest reports when the workload ended) while the instance
is still alive.  Exit codes alone are not evidence: stress-ng exits 0 when the
OOM killer took its worker, and the pids workload exits non-zero by design
when a fork is refused; but a workload that did not do its work (no OOM kill
and a failed status, no fork attempted) fails its sample.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from harness.measure import limits_image
from harness.measure.common import MIB, Rows, enforcement_note, guest_report, is_guest, ns_to_ms, reported
from harness.measure.watch import failed_workload, finished_ok, poll, reported_int, running
from harness.metric import LOWER, NONE, GridKey, MeasurementInfo, Metric, declare, measurement
from runtimes.base import Backend, BackendError, InstanceTimeout, Limits

if TYPE_CHECKING:  # pragma: no cover
    from harness.case import Case
    from harness.measure.context import Context
    from harness.results import Sample

_INT = (int,)


def memory_limits(cell: Mapping[str, Any]) -> Limits:
    return Limits(memory_mib=cell["limit_mib"])


def pids_limits(cell: Mapping[str, Any]) -> Limits:
    return Limits(pids=cell["limit"])


_REPORT, _VALIDATE = "harness.report.charts_enforcement", "harness.validate"
MEM_LIMIT = MeasurementInfo(
    "mem_limit", title="Memory limit enforcement", workload="mem", single_shot=True,
    grid={"limit_mib": GridKey(_INT, 4, 1 << 20), "mib": GridKey(_INT, 1, 1 << 20)},
    workload_keys=("mib",), limits=memory_limits,  # touch ``mib`` MiB under a limit of ``limit_mib``
    images=limits_image.MEM_GRID,  # an app started under the limit: ``limit_mib`` alone
    charts=(f"{_REPORT}:mem_limit",), findings=("harness.report.findings_enforcement:mem_limit",),
    gated=True, bounds=f"{_VALIDATE}.derive:mem_limit_bounds",
    mutations={"OOM never happens": f"{_VALIDATE}.selftest:oom_never"})
PIDS_LIMIT = MeasurementInfo(
    "pids_limit", title="Pids limit enforcement", workload="pids", single_shot=True,
    grid={"limit": GridKey(_INT, 1, 1 << 22), "count": GridKey(_INT, 1, 100_000)},
    workload_keys=("count",), limits=pids_limits,  # try ``count`` forks under a limit of ``limit``
    images=limits_image.PIDS_GRID,  # an app started under the limit: ``limit`` alone
    charts=(f"{_REPORT}:pids_limit",), findings=("harness.report.findings_enforcement:pids_limit",),
    gated=True, bounds=f"{_VALIDATE}.derive:pids_limit_bounds",
    mutations={"pids limit lets one extra fork through": f"{_VALIDATE}.selftest:extra_fork"})

declare(
    Metric("mem_peak", "MiB", NONE, "mem_limit", peer=True, description="the cgroup's peak usage"),
    Metric("mem_limit", "MiB", NONE, "mem_limit", description="the limit asked for"),
    Metric("oom_killed", "bool", NONE, "mem_limit", headline=True,
           description="the OOM killer acted (the cgroup's or guest's counter moved)"),
    Metric("oom_time_ms", "ms", LOWER, "mem_limit", headline=True, peer=True,
           description="ready -> first observation of the kill"),
    Metric("mem_failcnt", "count", NONE, "mem_limit", description="the cgroup's failcnt (v2: memory.events max)"),
    Metric("mem_events_oom", "count", NONE, "mem_limit", description="memory.events oom: times the limit was hit "
                                                                     "and reclaim failed"),
    Metric("pids_reached", "count", NONE, "pids_limit", headline=True, peer=True,
           description="processes the workload counted (its forks that succeeded, plus itself)"),
    Metric("pids_tried", "count", NONE, "pids_limit", description="forks the workload attempted"),
    Metric("pids_limit", "count", NONE, "pids_limit", description="the limit asked for"),
    Metric("pids_refused", "count", NONE, "pids_limit", headline=True,
           description="the cgroup's refused-fork counter (pids.events max)"),
    Metric("pids_peak", "count", NONE, "pids_limit", description="the most pids seen at once"),
)


def _also(note: str | None, words: str) -> str:
    return "; ".join(filter(None, [note, words]))


# -- mem_limit -------------------------------------------------------------------------
@measurement(MEM_LIMIT)
def mem_limit(backend: Backend, case: Case, ctx: Context, repetition: int, warmup: bool) -> list[Sample]:
    if case.workload.image is not None:  # an app under the limit (limits_image)
        return _mem_image(backend, case, ctx, repetition, warmup)
    limit_mib = case.limits.memory_mib
    if limit_mib is None:
        raise ValueError("mem_limit needs a memory limit (grid key limit_mib)")
    seconds = float(case.workload.bound()["seconds"])
    rows = Rows(backend, case, ctx, repetition, warmup, note=enforcement_note(backend, "memory"))
    reads: list[tuple[int, dict[str, float]]] = []
    spec = ctx.spec(backend, case.workload, case.limits, case.timeout_s)
    with running(ctx, backend, spec) as (inst, watch):
        rows.seen(inst)
        if is_guest(backend):  # say how much RAM the guest had around its cgroup
            rows.note = _also(rows.note, f"guest RAM {spec.guest_memory_mib} MiB")
        t_ready = inst.wait_ready(case.timeout_s)
        allowance = seconds + case.timeout_s
        watch.start(inst, allowance)
        if not poll(inst, watch, t_ready + int(allowance * 1e9), lambda t, u: reads.append((t, u))):
            raise InstanceTimeout(f"{inst.name}: {case.workload.name} still running {allowance:g} s after ready")
        report = guest_report(inst)
    samples = _mem_rows(rows, limit_mib, t_ready, reads, report)
    killed = next(r.value for r in samples if r.metric == "oom_killed")
    if not killed:  # an OOM kill explains any status; without one the workload must have succeeded
        finished_ok(f"{case.workload.name} ({case.workload.bound()['mib']} MiB)", inst, watch, 0)
    return samples


def _mem_rows(rows: Rows, limit_mib: int, t_ready: int, reads: list[tuple[int, dict[str, float]]],
              report: Mapping[str, Any]) -> list[Sample]:
    """The mem_limit rows from the polled counters, or a guest's own cgroup counters."""
    # Counters are the instance's own (a fresh cgroup or guest), so they start at zero at
    # launch: absolute values, not deltas from the first read, which may come after the kill.
    with_oom = [(t, u) for t, u in reads if "oom_kill" in u]
    # a guest: its cgroup's memory.events oom_kill, else /proc/vmstat oom_kill of the whole guest
    guest_ooms = reported_int(report, "guest_cg_mem_oom_kill")
    guest_ooms = guest_ooms if guest_ooms is not None else reported_int(report, "guest_oom_kill")
    if with_oom:
        first = next((t for t, u in with_oom if u["oom_kill"] > 0), None)
        rows.add("oom_killed", int(first is not None))
        if first is not None:
            rows.add("oom_time_ms", ns_to_ms(first - t_ready))
    elif guest_ooms is not None:
        rows.add("oom_killed", int(guest_ooms > 0), note=_also(rows.note, "OOM kills counted inside the guest"))
    else:
        raise BackendError(f"{rows.backend.name} exposes no OOM counter (usage() has no oom_kill, "
                           f"no guest report): cannot measure mem_limit")
    peaks = [u["mem_peak_bytes"] for _, u in reads if "mem_peak_bytes" in u]
    peaks = peaks or [u["mem_current_bytes"] for _, u in reads if "mem_current_bytes" in u]
    guest_peak = reported(report, "guest_cg_mem_peak")
    if peaks:
        rows.add("mem_peak", max(peaks) / MIB)
    elif guest_peak is not None:
        rows.add("mem_peak", guest_peak / MIB, note=_also(rows.note, "peak of the guest's cgroup"))
    rows.add("mem_limit", limit_mib)
    fails = [u["mem_failcnt"] for _, u in reads if "mem_failcnt" in u]
    if fails:
        rows.add("mem_failcnt", max(fails))
    events = [u["oom_events"] for _, u in reads if "oom_events" in u]  # memory.events oom (v2)
    guest_events = reported_int(report, "guest_cg_mem_oom")
    if events or guest_events is not None:
        rows.add("mem_events_oom", max(events) if events else guest_events)  # type: ignore[arg-type]
    return rows.samples


# -- pids_limit ------------------------------------------------------------------------
@measurement(PIDS_LIMIT)
def pids_limit(backend: Backend, case: Case, ctx: Context, repetition: int, warmup: bool) -> list[Sample]:
    if case.workload.image is not None:  # an app under the limit (limits_image)
        return _pids_image(backend, case, ctx, repetition, warmup)
    limit = case.limits.pids
    if limit is None:
        raise ValueError("pids_limit needs a pids limit (grid key limit)")
    seconds = float(case.workload.bound()["seconds"])
    rows = Rows(backend, case, ctx, repetition, warmup, note=enforcement_note(backend, "pids"))
    reads: list[dict[str, float]] = []
    spec = ctx.spec(backend, case.workload, case.limits, case.timeout_s)
    with running(ctx, backend, spec) as (inst, watch):
        rows.seen(inst)
        t_ready = inst.wait_ready(case.timeout_s)
        watch.start(inst, seconds + case.timeout_s)
        # The shell exits non-zero when a fork is refused: expected, not a failure.  Its
        # sleepers live on; cleanup ends them once the shell exited or `seconds` passed.
        poll(inst, watch, t_ready + int(seconds * 1e9), lambda t, u: reads.append(u))
    # after cleanup the marker channel is drained: the last "reached" is final
    tried = reported_int(inst.results, "tried")
    if tried is None:  # not one fork attempted: the workload never got to its loop
        raise failed_workload(f"{case.workload.name} (count {case.workload.bound()['count']})", inst, watch,
                              "attempted no fork")
    rows.add("pids_tried", tried)
    reached = reported_int(inst.results, "reached")
    rows.add("pids_reached", reached if reached is not None else 1,
             note=None if reached is not None else "no fork succeeded (the shell alone)")
    rows.add("pids_limit", limit)
    refused = [u["pids_refused"] for u in reads if "pids_refused" in u]
    guest_refused = reported_int(guest_report(inst), "guest_cg_pids_max")  # pids.events in the guest
    if refused or guest_refused is not None:
        rows.add("pids_refused", max(refused) if refused else guest_refused)  # type: ignore[arg-type]
    peak = [u["pids_current"] for u in reads if "pids_current" in u]
    if peak:
        rows.add("pids_peak", max(peak))
    return rows.samples


def _mem_image(backend: Backend, case: Case, ctx: Context, repetition: int, warmup: bool) -> list[Sample]:
    """mem_limit with an image workload: the app started under the limit (``limits_image``)."""
    limit_mib = case.limits.memory_mib
    if limit_mib is None:
        raise ValueError("mem_limit needs a memory limit (grid key limit_mib)")
    rows = Rows(backend, case, ctx, repetition, warmup, note=enforcement_note(backend, "memory"))
    held = limits_image.hold(backend, case, ctx, rows)
    kills = held.most("oom_kill")
    if not kills and held.sigkilled_unread():
        kills, rows.note = 1, "; ".join(filter(None, [rows.note, limits_image.INFERRED_OOM]))
    if kills is None:
        raise BackendError(f"{backend.name} exposes no OOM counter (usage() has no oom_kill): cannot measure "
                           f"mem_limit")
    if held.t_ready is None and not kills:
        raise limits_image.not_ready("memory limit", held)
    rows.add("oom_killed", int(kills > 0))
    ready = held.ready_ms()
    if ready is not None:
        rows.add("mem_limit_ready", ready)
    peak = held.most("mem_peak_bytes") or held.most("mem_current_bytes")
    if peak is not None:
        rows.add("mem_peak", peak / MIB)
    rows.add("mem_limit", limit_mib)
    for metric, key in (("mem_failcnt", "mem_failcnt"), ("mem_events_oom", "oom_events")):
        value = held.most(key)
        if value is not None:
            rows.add(metric, value)
    return rows.samples


def _pids_image(backend: Backend, case: Case, ctx: Context, repetition: int, warmup: bool) -> list[Sample]:
    """pids_limit with an image workload: the app started under the limit (``limits_image``)."""
    limit = case.limits.pids
    if limit is None:
        raise ValueError("pids_limit needs a pids limit (grid key limit)")
    rows = Rows(backend, case, ctx, repetition, warmup, note=enforcement_note(backend, "pids"))
    held = limits_image.hold(backend, case, ctx, rows)
    refused = held.most("pids_refused")
    if held.t_ready is None and not refused:
        raise limits_image.not_ready("pids limit", held)
    ready = held.ready_ms()
    if ready is not None:
        rows.add("pids_limit_ready", ready)
    rows.add("pids_limit", limit)
    if refused is not None:
        rows.add("pids_refused", refused)
    peak = held.most("pids_current")
    if peak is not None:
        rows.add("pids_peak", peak)
    return rows.samples
