"""cpu_quota, mem_limit, pids_limit: does the backend deliver what the limit asks?

Each reads the enforcement mechanism's own counters through ``inst.usage()``
(a cgroup for bare/container, libvirt's cgroup or the guest for VMs) while the
instance is still alive: the counters vanish with the instance at cleanup.
Exit codes are not evidence: stress-ng exits 0 when the OOM killer took its
worker, and the pids workload exits non-zero by design when a fork is refused.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from harness.measure import measurement, periods
from harness.measure.common import (
    MIB,
    ExitWatch,
    Rows,
    enforcement_note,
    guest_report,
    lookup,
    ns_to_ms,
)
from harness.measure.context import Context
from harness.results import Sample
from harness.scenario import Case
from runtimes.base import Backend, BackendError, Instance, InstanceTimeout, LaunchSpec, now_ns

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


def cpu_reader(inst: Instance) -> Callable[[], dict[str, float]]:
    """The cheapest read of the CPU counters: the cgroup's own CPU files when the instance
    has a cgroup, else everything ``usage()`` reads (a guest's domain cgroup)."""
    cg = inst.cgroup
    if cg is None:
        return lambda: read_usage(inst)

    def read() -> dict[str, float]:
        try:
            return cg.cpu_counters()
        except OSError:
            return {}
    return read


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
def running(backend: Backend, spec: LaunchSpec) -> Iterator[tuple[Instance, ExitWatch]]:
    """Launch ``spec``; yield the instance and its (not yet started) exit watch.

    On the way out the instance is cleaned up first (which ends the workload),
    then the watch's thread is joined."""
    with contextlib.ExitStack() as stack:
        watch = ExitWatch()
        stack.callback(watch.join)
        inst = stack.enter_context(backend.launch(spec))
        yield inst, watch


def is_guest(backend: Backend, ctx: Context, inst: Instance) -> bool:
    """Backends with an accelerator run a guest kernel and honour ``spec.vcpus``."""
    return bool(getattr(inst, "accel", None) or ctx.accel.get(backend.name))


def _guest_float(report: Mapping[str, Any], *names: str) -> float | None:
    value = lookup(report, *names)
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _guest_int(report: Mapping[str, Any], *names: str) -> int | None:
    value = _guest_float(report, *names)
    return int(value) if value is not None else None


# -- cpu_quota -------------------------------------------------------------------------
#: the per-period series of every cpu_quota sample, one JSON line each, beside the logs
PERIODS_FILE = "cpu-periods.jsonl"


def applied_quota(u: Usage, requested: float | None) -> tuple[float | None, int | None, str | None]:
    """(quota in CPUs, period in ns, note) as the enforcer applied them: read back from its
    counters (``cpu_quota_us``/``cpu_period_us``), not taken from the request, which the
    backend may have clamped (a quota below 1 ms per period is raised to 1 ms)."""
    q, p = u.get("cpu_quota_us"), u.get("cpu_period_us")
    if q is not None and p:
        return (float(q) / float(p) if q >= 0 else None), int(p * 1000), None
    if requested is None:
        return None, None, None
    return requested, None, "quota as requested: the backend does not expose the applied one"


def failed_workload(what: str, inst: Instance, watch: ExitWatch, why: str) -> BackendError:
    """The one error for a workload that did not do its work: why, its status, where its log is."""
    bits = [f"{what} {why}"]
    if watch.done.is_set():
        bits.append(f"exit status {watch.status}" if watch.error is None else f"wait failed: {watch.error}")
    status = (getattr(inst, "results", {}) or {}).get("status")
    if status is not None:
        bits.append(f"reported status {status}")
    if inst.log_path:
        bits.append(f"log: {inst.log_path}")
    return BackendError("; ".join(bits))


def finished_ok(what: str, inst: Instance, watch: ExitWatch, allowance: float) -> None:
    """Wait for the workload's own exit and demand status 0: the proof that it ran to the end."""
    if not watch.done.wait(allowance):
        raise failed_workload(what, inst, watch, f"did not end within {allowance:g} s of its window")
    status = (getattr(inst, "results", {}) or {}).get("status")
    if watch.error is not None or watch.status not in (0, None) or status not in ("0", None):
        raise failed_workload(what, inst, watch, "failed")


@measurement("cpu_quota")
def cpu_quota(backend: Backend, case: Case, ctx: Context, repetition: int, warmup: bool) -> list[Sample]:
    bound = case.workload.bound()
    threads, seconds = int(bound["threads"]), float(bound["seconds"])
    lead, end = cpu_window(seconds)
    rows = Rows(backend, case, ctx, repetition, warmup, note=enforcement_note(backend, "cpu"))
    spec = ctx.spec(backend, case.workload, case.limits, case.timeout_s)
    what = f"{case.workload.name} ({threads} thread{'s' if threads > 1 else ''})"
    with running(backend, spec) as (inst, watch):
        rows.seen(inst)
        guest = is_guest(backend, ctx, inst)
        t_ready = inst.wait_ready(case.timeout_s)
        watch.start(inst, seconds + case.timeout_s)
        u0 = read_usage(inst)
        if "cpu_usage_ns" not in u0:
            raise BackendError(f"{backend.name} exposes no CPU counter (usage() has no cpu_usage_ns): "
                               f"cannot measure cpu_quota")
        quota, period_ns, quota_note = applied_quota(u0, case.limits.cpu_quota)
        if period_ns is None and case.limits.cpu_quota is not None:
            period_ns = case.limits.cpu_period_us * 1000
        series = periods.sample(cpu_reader(inst), period_ns if quota is not None else None,
                                t_ready + int(lead * 1e9), t_ready + int(end * 1e9), stop=watch.done.is_set)
        if watch.done.is_set():
            raise failed_workload(what, inst, watch, f"exited before its measurement window closed "
                                  f"({end:g} s after ready)")
        finished_ok(what, inst, watch, seconds - end + case.timeout_s)
        report = guest_report(inst)
    return _cpu_rows(rows, ctx, series, quota, quota_note, threads, spec.vcpus if guest else None, report)


def _cpu_rows(rows: Rows, ctx: Context, series: periods.Series, quota: float | None, quota_note: str | None,
              threads: int, vcpus: int | None, report: Mapping[str, Any]) -> list[Sample]:
    """The cpu_quota rows from one window's phase-locked reads."""
    try:
        win = periods.window(series)
    except ValueError as e:
        raise BackendError(f"cpu counters: {e}") from e
    expected = cpu_expected(quota, threads, host_cores(), vcpus)
    note = "; ".join(filter(None, [rows.note, quota_note, win.note]))
    rows.add("cpu_delivered", win.delivered, "cpus", note=note or None)
    rows.add("cpu_expected", expected, "cpus", note=note or None)
    rows.add("cpu_ratio", win.delivered / expected, "ratio", note=note or None)
    rows.add("window_s", win.seconds, "s")
    if quota is not None:
        rows.add("cpu_quota_applied", quota, "cpus")
    n = win.delta("periods")
    for metric, attr, scale, unit in (("nr_periods", "periods", 1.0, "count"),
                                      ("nr_throttled", "throttled", 1.0, "count"),
                                      ("throttled_ms", "throttled_ns", 1e-6, "ms")):
        d = win.delta(attr)
        if d is not None:
            rows.add(metric, d * scale, unit)
    throttled = win.delta("throttled")
    if n and throttled is not None:
        rows.add("throttled_share", throttled / n, "ratio")
    per = periods.per_period(series, (quota or 0) * series.period_ns)
    if per:
        for q in (0.01, 0.5, 0.99):
            rows.add(f"period_ratio_p{round(q * 100)}", periods.quantile(per, q), "ratio")
        jit = periods.jitter_us(series)
        if jit:
            rows.add("read_jitter_p99", periods.quantile(jit, 0.99), "us",
                     note=None if series.realtime else "reads not real-time (SCHED_FIFO refused)")
        if n:
            rows.add("period_coverage", len(per) * series.stride / n, "ratio")
        _store_periods(rows, ctx, series, quota, per)
    view = guest_cpu_delivered(report)
    if view is not None:
        rows.add("guest_cpu_delivered", view, "cpus", note="as the guest's kernel counts it, whole run")
    return rows.samples


def _store_periods(rows: Rows, ctx: Context, series: periods.Series, quota: float | None,
                   per: list[float]) -> None:
    """Append this sample's per-period series to the run's PERIODS_FILE (the report charts it)."""
    line = {"backend": rows.backend.name, "case": rows.case.id, "measurement": rows.case.measurement,
            "params": dict(rows.case.params), "repetition": rows.repetition, "warmup": rows.warmup,
            "accel": rows.accel, "period_ms": series.period_ns / 1e6, "stride": series.stride,
            "quota": quota, "ratios": [round(r, 4) for r in per]}
    with contextlib.suppress(OSError):  # the figures are in the rows; the series is extra detail
        ctx.log_dir.mkdir(parents=True, exist_ok=True)
        with open(ctx.log_dir / PERIODS_FILE, "a") as f:
            f.write(json.dumps(line) + "\n")


def guest_cpu_delivered(report: Mapping[str, Any]) -> float | None:
    """CPUs the guest's own kernel saw busy while the workload ran, from its init's report:
    busy CPU seconds (/proc/stat) over the guest's uptime from workload start to exit."""
    busy = _guest_float(report, "guest_cpu_busy_s")
    start, stop = _guest_float(report, "guest_uptime_workload"), _guest_float(report, "guest_uptime_exit")
    if busy is None or start is None or stop is None or stop <= start:
        return None
    return busy / (stop - start)


# -- mem_limit -------------------------------------------------------------------------
@measurement("mem_limit")
def mem_limit(backend: Backend, case: Case, ctx: Context, repetition: int, warmup: bool) -> list[Sample]:
    limit_mib = case.limits.memory_mib
    if limit_mib is None:
        raise ValueError("mem_limit needs a memory limit (grid key limit_mib)")
    seconds = float(case.workload.bound()["seconds"])
    rows = Rows(backend, case, ctx, repetition, warmup, note=enforcement_note(backend, "memory"))
    reads: list[tuple[int, dict[str, float]]] = []
    spec = ctx.spec(backend, case.workload, case.limits, case.timeout_s)
    with running(backend, spec) as (inst, watch):
        rows.seen(inst)
        if is_guest(backend, ctx, inst):
            # the guest's RAM, not the requested limit, is what bounds the workload: say how much
            rows.note = f"{rows.note or 'guest memory size'}: {spec.guest_memory_mib} MiB"
        t_ready = inst.wait_ready(case.timeout_s)
        allowance = seconds + case.timeout_s
        watch.start(inst, allowance)
        # the exit status is no evidence (stress-ng exits 0 after an OOM kill): only counters are
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
    """The mem_limit rows from the polled counters (and a guest's own OOM count)."""
    # Counters are the instance's own (a fresh cgroup or guest), so they start at zero at
    # launch: absolute values, not deltas from the first read, which may come after the kill.
    with_oom = [(t, u) for t, u in reads if "oom_kill" in u]
    guest_ooms = _guest_int(report, "guest_oom_kill", "oom_kill")  # /proc/vmstat oom_kill in the guest
    if with_oom:
        first = next((t for t, u in with_oom if u["oom_kill"] > 0), None)
        rows.add("oom_killed", int(first is not None), "bool")
        if first is not None:
            rows.add("oom_time_ms", ns_to_ms(first - t_ready), "ms")
    elif guest_ooms is not None:
        # No host counter: the guest's kernel counted its own OOM kills (guest RAM is the limit).
        rows.add("oom_killed", int(guest_ooms > 0), "bool",
                 note="; ".join(filter(None, [rows.note, "OOM kills counted inside the guest"])))
    else:
        raise BackendError(f"{rows.backend.name} exposes no OOM counter (usage() has no oom_kill, "
                           f"no guest report): cannot measure mem_limit")
    peaks = [u["mem_peak_bytes"] for _, u in reads if "mem_peak_bytes" in u]
    peaks = peaks or [u["mem_current_bytes"] for _, u in reads if "mem_current_bytes" in u]
    if peaks:
        rows.add("mem_peak", max(peaks) / MIB, "MiB")
    rows.add("mem_limit", limit_mib, "MiB")
    fails = [u["mem_failcnt"] for _, u in reads if "mem_failcnt" in u]
    if fails:
        rows.add("mem_failcnt", max(fails), "count")
    events = [u["oom_events"] for _, u in reads if "oom_events" in u]  # memory.events oom (v2)
    if events:
        rows.add("mem_events_oom", max(events), "count")
    return rows.samples


# -- pids_limit ------------------------------------------------------------------------
@measurement("pids_limit")
def pids_limit(backend: Backend, case: Case, ctx: Context, repetition: int, warmup: bool) -> list[Sample]:
    limit = case.limits.pids
    if limit is None:
        raise ValueError("pids_limit needs a pids limit (grid key limit)")
    seconds = float(case.workload.bound()["seconds"])
    rows = Rows(backend, case, ctx, repetition, warmup, note=enforcement_note(backend, "pids"))
    reads: list[dict[str, float]] = []
    spec = ctx.spec(backend, case.workload, case.limits, case.timeout_s)
    with running(backend, spec) as (inst, watch):
        rows.seen(inst)
        t_ready = inst.wait_ready(case.timeout_s)
        watch.start(inst, seconds + case.timeout_s)
        # The shell exits non-zero when a fork is refused: expected, not a failure.  Its
        # sleepers live on; cleanup ends them once the shell exited or `seconds` passed.
        poll(inst, watch, t_ready + int(seconds * 1e9), lambda t, u: reads.append(u))
    # after cleanup the marker channel is drained: the last "reached" is final
    tried = _guest_int(inst.results, "tried")
    if tried is None:  # not one fork attempted: the workload never got to its loop
        raise failed_workload(f"{case.workload.name} (count {case.workload.bound()['count']})", inst, watch,
                              "attempted no fork")
    rows.add("pids_tried", tried, "count")
    reached = _guest_int(inst.results, "reached")
    rows.add("pids_reached", reached if reached is not None else 1, "count",
             note=None if reached is not None else "no fork succeeded (the shell alone)")
    rows.add("pids_limit", limit, "count")
    refused = [u["pids_refused"] for u in reads if "pids_refused" in u]
    if refused:
        rows.add("pids_refused", max(refused), "count")
    peak = [u["pids_current"] for u in reads if "pids_current" in u]
    if peak:
        rows.add("pids_peak", max(peak), "count")
    return rows.samples
