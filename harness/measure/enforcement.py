"""cpu_quota, mem_limit, pids_limit: does the backend deliver what the limit asks?

Each reads the enforcement mechanism's own counters through ``inst.usage()``
(a cgroup for bare/container, libvirt's cgroup or the guest for VMs) while the
instance is still alive: the counters vanish with the instance at cleanup.
Exit codes are not evidence: stress-ng exits 0 when the OOM killer took its
worker, and the pids workload exits non-zero by design when a fork is refused.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from harness.measure.common import (
    MIB,
    ExitWatch,
    Rows,
    enforcement_note,
    guest_report,
    is_guest,
    ns_to_ms,
    reported,
)
from harness.metric import LOWER, NONE, ONE, GridKey, MeasurementInfo, Metric, declare, measurement
from runtimes.base import Backend, BackendError, Instance, InstanceTimeout, LaunchSpec, now_ns

if TYPE_CHECKING:  # pragma: no cover
    from harness.measure.context import Context
    from harness.results import Sample
    from harness.scenario import Case

_NUM = (int, float)
_INT = (int,)
CPU_QUOTA = MeasurementInfo("cpu_quota", workload="cpu", single_shot=True, grid={
    "quota": GridKey(_NUM, 1e-3, 1024), "threads": GridKey(_INT, 1, 1024),
    "period_ms": GridKey(_NUM, 1, 1000, required=False)})
MEM_LIMIT = MeasurementInfo("mem_limit", workload="mem", single_shot=True, grid={
    "limit_mib": GridKey(_INT, 4, 1 << 20), "mib": GridKey(_INT, 1, 1 << 20)})
PIDS_LIMIT = MeasurementInfo("pids_limit", workload="pids", single_shot=True, grid={
    "limit": GridKey(_INT, 1, 1 << 22), "count": GridKey(_INT, 1, 100_000)})

declare(
    Metric("cpu_ratio", "ratio", ONE, "cpu_quota", headline=True, peer=True,
           description="cpu_delivered / cpu_expected: 1 is perfect enforcement"),
    Metric("cpu_delivered", "cpus", NONE, "cpu_quota", peer=True,
           description="Δ(cgroup CPU usage) / Δ(wall time) over the busy window"),
    Metric("cpu_expected", "cpus", NONE, "cpu_quota", description="min(quota, threads, cores, vCPUs)"),
    Metric("nr_periods", "count", NONE, "cpu_quota", description="CFS periods in the window"),
    Metric("nr_throttled", "count", NONE, "cpu_quota", description="periods the group was throttled in"),
    Metric("throttled_ms", "ms", NONE, "cpu_quota", description="time spent throttled in the window"),
    Metric("guest_cpu_delivered", "cpus", NONE, "cpu_quota",
           description="CPUs busy as the guest's kernel counts them, whole run"),
    Metric("mem_peak", "MiB", NONE, "mem_limit", peer=True, description="the cgroup's peak usage"),
    Metric("mem_limit", "MiB", NONE, "mem_limit", description="the limit asked for"),
    Metric("oom_killed", "bool", NONE, "mem_limit", headline=True,
           description="the OOM killer acted (the cgroup's or guest's counter moved)"),
    Metric("oom_time_ms", "ms", LOWER, "mem_limit", headline=True, peer=True,
           description="ready -> first observation of the kill"),
    Metric("mem_failcnt", "count", NONE, "mem_limit", description="the cgroup's failcnt"),
    Metric("pids_reached", "count", NONE, "pids_limit", headline=True, peer=True,
           description="processes the workload counted (its forks that succeeded, plus itself)"),
    Metric("pids_limit", "count", NONE, "pids_limit", description="the limit asked for"),
    Metric("pids_refused", "count", NONE, "pids_limit", headline=True,
           description="the cgroup's refused-fork counter"),
    Metric("pids_peak", "count", NONE, "pids_limit", description="the most pids seen at once"),
)

#: how often counters are read while a workload runs
POLL_S = 0.01

Usage = Mapping[str, float]


# -- helpers (pure) ------------------------------------------------------------
def delta(before: Usage, after: Usage, key: str) -> float | None:
    """How much counter ``key`` grew between two readings; None if either lacks it."""
    if key not in before or key not in after:
        return None
    return float(after[key]) - float(before[key])


def cpu_delivered(before: Usage, t_before_ns: int, after: Usage, t_after_ns: int) -> float:
    """CPUs delivered over a window: CPU time consumed / wall time elapsed."""
    used = delta(before, after, "cpu_usage_ns")
    if used is None:
        raise BackendError("usage() has no cpu_usage_ns")
    wall = t_after_ns - t_before_ns
    if wall <= 0:
        raise ValueError(f"empty measurement window ({wall} ns)")
    return used / wall


def host_cores() -> int:
    """CPUs this process (and so the workload it launches) may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def cpu_expected(quota: float | None, threads: int, cores: int, vcpus: int | None = None) -> float:
    """What a perfect enforcer delivers: the quota, unless fewer threads/cores/vCPUs can use it."""
    bounds = [float(threads), float(cores)]
    if quota is not None:
        bounds.append(quota)
    if vcpus is not None:
        bounds.append(float(vcpus))
    return min(bounds)


def cpu_window(seconds: float) -> tuple[float, float]:
    """(start, end) of the counting window in seconds after ready.

    The start skips stress-ng's own start-up (exec, forking its workers), which
    uses less than the quota; the end stays clear of the workload's exit, after
    which the counters may vanish.  stress-ng's timer starts after the ready
    marker, so ``seconds - margin`` after ready is always before the exit.
    """
    lead = min(0.2, 0.1 * seconds)
    margin = max(0.4, 0.1 * seconds)
    if seconds - margin - lead < 0.2:
        raise ValueError(f"cpu workload of {seconds:g} s is too short to measure (use >= 1 s)")
    return lead, seconds - margin


# -- helpers (instance) ------------------------------------------------------------
def read_usage(inst: Instance) -> dict[str, float]:
    """``inst.usage()``, or {} once the mechanism is gone (cgroup removed with a powered-off guest)."""
    try:
        return dict(inst.usage())
    except (OSError, BackendError):
        return {}


def read_at(inst: Instance, t_ns: int) -> tuple[int, dict[str, float]]:
    """Sleep until ``t_ns``, then read usage; the timestamp is the middle of the read."""
    pause = (t_ns - now_ns()) / 1e9
    if pause > 0:
        time.sleep(pause)
    t0 = now_ns()
    u = read_usage(inst)
    return (t0 + now_ns()) // 2, u


def poll(inst: Instance, watch: ExitWatch, until_ns: int,
         on_read: Callable[[int, dict[str, float]], None]) -> bool:
    """Read usage every POLL_S until the workload exits (True) or ``until_ns`` (False).

    One read always follows the exit being seen (and precedes cleanup), so the
    final counter values are included."""
    while True:
        gone = watch.done.is_set()
        on_read(now_ns(), read_usage(inst))
        if gone:
            return True
        if now_ns() >= until_ns:
            return False
        watch.done.wait(POLL_S)


@contextlib.contextmanager
def running(ctx: Context, backend: Backend, spec: LaunchSpec) -> Iterator[tuple[Instance, ExitWatch]]:
    """Launch ``spec``; yield the instance and its (not yet started) exit watch.

    On the way out the instance is cleaned up first (which ends the workload),
    then the watch's thread is joined."""
    with contextlib.ExitStack() as stack:
        watch = ExitWatch()
        stack.callback(watch.join)
        inst = stack.enter_context(ctx.launch(backend, spec))
        yield inst, watch


def _reported_int(report: Mapping[str, Any], key: str) -> int | None:
    value = reported(report, key)
    return int(value) if value is not None else None


# -- cpu_quota -------------------------------------------------------------------------
@measurement(CPU_QUOTA)
def cpu_quota(backend: Backend, case: Case, ctx: Context, repetition: int, warmup: bool) -> list[Sample]:
    bound = case.workload.bound()
    threads, seconds = int(bound["threads"]), float(bound["seconds"])
    lead, end = cpu_window(seconds)
    rows = Rows(backend, case, ctx, repetition, warmup, note=enforcement_note(backend, "cpu"))
    spec = ctx.spec(backend, case.workload, case.limits, case.timeout_s)
    with running(ctx, backend, spec) as (inst, watch):
        rows.seen(inst)
        guest = is_guest(backend)
        t_ready = inst.wait_ready(case.timeout_s)
        watch.start(inst, seconds + case.timeout_s)
        t0, u0 = read_at(inst, t_ready + int(lead * 1e9))
        if "cpu_usage_ns" not in u0:
            raise BackendError(f"{backend.name} exposes no CPU counter (usage() has no cpu_usage_ns): "
                               f"cannot measure cpu_quota")
        t1, u1 = read_at(inst, t_ready + int(end * 1e9))
        # A loaded host may wake us late; the reading still counts while the workload's
        # own timer (``seconds`` from ready, at the earliest) cannot have run out.
        if watch.done.is_set() and (t1 - t_ready >= seconds * 1e9 or "cpu_usage_ns" not in u1):
            raise BackendError(f"{case.workload.name} exited before the measurement window closed "
                               f"({end:g} s after ready){f': {watch.error}' if watch.error else ''}")
        # A guest reports its own CPU time only once the workload exited: let it end by
        # itself (a fraction of a second).  Other backends are simply stopped by cleanup.
        if guest:
            watch.done.wait(seconds - end + case.timeout_s)
        report = guest_report(inst)
    delivered = cpu_delivered(u0, t0, u1, t1)
    expected = cpu_expected(case.limits.cpu_quota, threads, host_cores(), spec.vcpus if guest else None)
    rows.add("cpu_delivered", delivered)
    rows.add("cpu_expected", expected)
    rows.add("cpu_ratio", delivered / expected)
    for metric, key, scale in (("nr_periods", "cpu_nr_periods", 1.0),
                               ("nr_throttled", "cpu_nr_throttled", 1.0),
                               ("throttled_ms", "cpu_throttled_ns", 1e-6)):
        d = delta(u0, u1, key)
        if d is not None:
            rows.add(metric, d * scale)
    view = reported(report, "guest_cpu_delivered")  # computed by the guest's runtime, stored as is
    if view is not None:
        rows.add("guest_cpu_delivered", view, note="as the guest's kernel counts it, whole run")
    return rows.samples


# -- mem_limit -------------------------------------------------------------------------
@measurement(MEM_LIMIT)
def mem_limit(backend: Backend, case: Case, ctx: Context, repetition: int, warmup: bool) -> list[Sample]:
    limit_mib = case.limits.memory_mib
    if limit_mib is None:
        raise ValueError("mem_limit needs a memory limit (grid key limit_mib)")
    seconds = float(case.workload.bound()["seconds"])
    rows = Rows(backend, case, ctx, repetition, warmup, note=enforcement_note(backend, "memory"))
    reads: list[tuple[int, dict[str, float]]] = []
    spec = ctx.spec(backend, case.workload, case.limits, case.timeout_s)
    with running(ctx, backend, spec) as (inst, watch):
        rows.seen(inst)
        if is_guest(backend):
            # the guest's RAM, not the requested limit, is what bounds the workload: say how much
            rows.note = f"{rows.note or 'guest memory size'}: {spec.guest_memory_mib} MiB"
        t_ready = inst.wait_ready(case.timeout_s)
        allowance = seconds + case.timeout_s
        watch.start(inst, allowance)
        # the exit status is no evidence (stress-ng exits 0 after an OOM kill): only counters are
        if not poll(inst, watch, t_ready + int(allowance * 1e9), lambda t, u: reads.append((t, u))):
            raise InstanceTimeout(f"{inst.name}: {case.workload.name} still running {allowance:g} s after ready")
        report = guest_report(inst)
    return _mem_rows(rows, limit_mib, t_ready, reads, report)


def _mem_rows(rows: Rows, limit_mib: int, t_ready: int, reads: list[tuple[int, dict[str, float]]],
              report: Mapping[str, Any]) -> list[Sample]:
    """The mem_limit rows from the polled counters (and a guest's own OOM count)."""
    # Counters are the instance's own (a fresh cgroup or guest), so they start at zero at
    # launch: absolute values, not deltas from the first read, which may come after the kill.
    with_oom = [(t, u) for t, u in reads if "oom_kill" in u]
    guest_ooms = _reported_int(report, "guest_oom_kill")  # /proc/vmstat oom_kill in the guest
    if with_oom:
        first = next((t for t, u in with_oom if u["oom_kill"] > 0), None)
        rows.add("oom_killed", int(first is not None))
        if first is not None:
            rows.add("oom_time_ms", ns_to_ms(first - t_ready))
    elif guest_ooms is not None:
        # No host counter: the guest's kernel counted its own OOM kills (guest RAM is the limit).
        rows.add("oom_killed", int(guest_ooms > 0),
                 note="; ".join(filter(None, [rows.note, "OOM kills counted inside the guest"])))
    else:
        raise BackendError(f"{rows.backend.name} exposes no OOM counter (usage() has no oom_kill, "
                           f"no guest report): cannot measure mem_limit")
    peaks = [u["mem_peak_bytes"] for _, u in reads if "mem_peak_bytes" in u]
    peaks = peaks or [u["mem_current_bytes"] for _, u in reads if "mem_current_bytes" in u]
    if peaks:
        rows.add("mem_peak", max(peaks) / MIB)
    rows.add("mem_limit", limit_mib)
    fails = [u["mem_failcnt"] for _, u in reads if "mem_failcnt" in u]
    if fails:
        rows.add("mem_failcnt", max(fails))
    return rows.samples


# -- pids_limit ------------------------------------------------------------------------
@measurement(PIDS_LIMIT)
def pids_limit(backend: Backend, case: Case, ctx: Context, repetition: int, warmup: bool) -> list[Sample]:
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
    reached = _reported_int(inst.results, "reached")
    rows.add("pids_reached", reached if reached is not None else 1,
             note=None if reached is not None else "no fork succeeded (the shell alone)")
    rows.add("pids_limit", limit)
    refused = [u["pids_refused"] for u in reads if "pids_refused" in u]
    if refused:
        rows.add("pids_refused", max(refused))
    peak = [u["pids_current"] for u in reads if "pids_current" in u]
    if peak:
        rows.add("pids_peak", max(peak))
    return rows.samples
