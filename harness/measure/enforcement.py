"""mem_limit, pids_limit (cpu_quota: ``harness.measure.cpu``): does the backend enforce the limit?

Each reads the enforcement mechanism's own counters through ``inst.usage()``
(a cgroup for bare/container, libvirt's cgroup or the guest for VMs) while the
instance is still alive: the counters vanish with the instance at cleanup.
Exit codes are not evidence: stress-ng exits 0 when the OOM killer took its
worker, and the pids workload exits non-zero by design when a fork is refused.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from harness.measure import measurement
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


# -- helpers (instance) ------------------------------------------------------------
def read_usage(inst: Instance) -> dict[str, float]:
    """``inst.usage()``, or {} once the mechanism is gone (cgroup removed with a powered-off guest)."""
    try:
        return dict(inst.usage())
    except (OSError, BackendError):
        return {}


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


def guest_float(report: Mapping[str, Any], *names: str) -> float | None:
    value = lookup(report, *names)
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def guest_int(report: Mapping[str, Any], *names: str) -> int | None:
    value = guest_float(report, *names)
    return int(value) if value is not None else None


# -- proof that the workload did its work -----------------------------------------------
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
        if is_guest(backend, ctx, inst):  # say how much RAM the guest had around its cgroup
            rows.note = "; ".join(filter(None, [rows.note, f"guest RAM {spec.guest_memory_mib} MiB"]))
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
    # a guest: its cgroup's memory.events oom_kill, else /proc/vmstat oom_kill of the whole guest
    guest_ooms = guest_int(report, "guest_cg_mem_oom_kill", "guest_oom_kill", "oom_kill")
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
    guest_peak = guest_float(report, "guest_cg_mem_peak")
    if peaks:
        rows.add("mem_peak", max(peaks) / MIB, "MiB")
    elif guest_peak is not None:
        rows.add("mem_peak", guest_peak / MIB, "MiB", note="; ".join(filter(None, [rows.note, "peak of the guest's cgroup"])))
    rows.add("mem_limit", limit_mib, "MiB")
    fails = [u["mem_failcnt"] for _, u in reads if "mem_failcnt" in u]
    if fails:
        rows.add("mem_failcnt", max(fails), "count")
    events = [u["oom_events"] for _, u in reads if "oom_events" in u]  # memory.events oom (v2)
    guest_events = guest_int(report, "guest_cg_mem_oom")
    if events or guest_events is not None:
        rows.add("mem_events_oom", max(events) if events else guest_events, "count")
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
    tried = guest_int(inst.results, "tried")
    if tried is None:  # not one fork attempted: the workload never got to its loop
        raise failed_workload(f"{case.workload.name} (count {case.workload.bound()['count']})", inst, watch,
                              "attempted no fork")
    rows.add("pids_tried", tried, "count")
    reached = guest_int(inst.results, "reached")
    rows.add("pids_reached", reached if reached is not None else 1, "count",
             note=None if reached is not None else "no fork succeeded (the shell alone)")
    rows.add("pids_limit", limit, "count")
    refused = [u["pids_refused"] for u in reads if "pids_refused" in u]
    guest_refused = guest_int(guest_report(inst), "guest_cg_pids_max")  # pids.events in the guest
    if refused or guest_refused is not None:
        rows.add("pids_refused", max(refused) if refused else guest_refused, "count")
    peak = [u["pids_current"] for u in reads if "pids_current" in u]
    if peak:
        rows.add("pids_peak", max(peak), "count")
    return rows.samples
