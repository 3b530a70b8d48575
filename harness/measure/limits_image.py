"""cpu_quota, mem_limit and pids_limit with an image workload: the app started and held under the limit.

A catalog workload is built to push against a limit (stress-ng's threads, its MiB, the pids
workload's forks); an image's app is not, so the question becomes the one a user asks: does
my service start under this limit, how long does it take, and what does the limit's counter
say?  One sample launches the image with the cell's limit, waits for the app's own readiness
(``runtimes.readiness``), holds it ``settle`` seconds reading the counters every
``watch.POLL_S``, then stops it.  The counters are the enforcement mechanism's own
(``inst.usage()``, cumulative from the instance's start):

- cpu_quota: ``cpu_quota_ready`` (launch -> ready under the quota), ``startup_cpu`` (CPU
  time used until ready), the CFS periods and throttling until then, the quota applied;
- mem_limit: ``oom_killed``, ``mem_peak``, ``mem_failcnt``; ``mem_limit_ready`` when it
  became ready (an app the OOM killer ended first is a result, not a failed sample);
- pids_limit: ``pids_peak``, ``pids_refused``; ``pids_limit_ready`` when it became ready.

An app that neither became ready nor met its limit (no OOM kill, no refused fork) fails its
sample with the reason.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from harness.measure.common import MIB, Rows, enforcement_note, ns_to_ms
from harness.measure.watch import POLL_S, read_usage, running
from harness.metric import LOWER, NONE, GridKey, Metric, declare
from runtimes.base import Backend, BackendError, Instance, now_ns

if TYPE_CHECKING:  # pragma: no cover
    from harness.measure.context import Context
    from harness.results import Sample
    from harness.scenario import Case

_NUM, _INT = (int, float), (int,)
#: the grids an image workload takes (``MeasurementInfo.images``): the limit alone
CPU_GRID = {"quota": GridKey(_NUM, 1e-3, 1024), "period_ms": GridKey(_NUM, 1, 1000, required=False),
            "weight": GridKey(_INT, 1, 10_000, required=False), "burst_ms": GridKey(_NUM, 0, 1000, required=False)}
MEM_GRID = {"limit_mib": GridKey(_INT, 4, 1 << 20)}
PIDS_GRID = {"limit": GridKey(_INT, 1, 1 << 22)}

declare(
    Metric("cpu_quota_ready", "ms", LOWER, "cpu_quota", peer=True,
           description="image workloads: launch -> ready with the CPU quota applied"),
    Metric("startup_cpu", "ms", NONE, "cpu_quota",
           description="image workloads: CPU time the instance used from launch to ready"),
    Metric("mem_limit_ready", "ms", LOWER, "mem_limit", peer=True,
           description="image workloads: launch -> ready with the memory limit applied"),
    Metric("pids_limit_ready", "ms", LOWER, "pids_limit", peer=True,
           description="image workloads: launch -> ready with the pids limit applied"),
)


@dataclass
class Held:
    """What one limited launch of an image saw."""

    t_launch: int
    t_ready: int | None
    why: str | None  # why it did not become ready
    #: the counters read until ready (or the failure), then during the hold
    reads: list[dict[str, float]] = field(default_factory=list)
    ready_index: int = 0  # the first read after ready (or after the failure)

    def ready_ms(self) -> float | None:
        return ns_to_ms(self.t_ready - self.t_launch) if self.t_ready is not None else None

    @property
    def at_ready(self) -> dict[str, float]:
        """The first read after ready (the counters until ready: cumulative from the launch)."""
        return self.reads[self.ready_index] if self.ready_index < len(self.reads) else {}

    def most(self, key: str) -> float | None:
        values = [u[key] for u in self.reads if key in u]
        return max(values) if values else None


def hold(backend: Backend, case: Case, ctx: Context, rows: Rows) -> Held:
    """Launch the case's image under its limits, wait for ready, hold it ``settle`` s, reading the
    counters every ``POLL_S`` all along: an app the limit ends before it is ready takes its
    counters with it where a runtime removes the cgroup at once (runc, crun)."""
    spec = ctx.spec(backend, case.workload, case.limits, case.timeout_s)
    with running(ctx, backend, spec) as (inst, _):
        rows.seen(inst)
        assert inst.times.t_launch is not None
        held = Held(inst.times.t_launch, None, None)
        waiter = threading.Thread(target=_wait_ready, args=(inst, case.timeout_s, held), daemon=True,
                                  name=f"{inst.name}-ready")
        waiter.start()
        while waiter.is_alive():
            held.reads.append(read_usage(inst))
            waiter.join(POLL_S)
        held.ready_index = len(held.reads)
        held.reads.append(read_usage(inst))
        end = now_ns() + int(case.settle_s * 1e9) if held.t_ready is not None else 0
        while now_ns() < end and inst.processes():
            time.sleep(POLL_S)
            held.reads.append(read_usage(inst))
    return held


def _wait_ready(inst: Instance, timeout: float, held: Held) -> None:
    try:
        held.t_ready = inst.wait_ready(timeout)
    except BackendError as e:  # (a timeout too) the limit may be why: the counters say
        held.why = str(e)


def _not_ready(what: str, held: Held) -> BackendError:
    return BackendError(f"the image workload did not become ready under the {what} and the limit did not act: "
                        f"{held.why}")


def cpu_quota(backend: Backend, case: Case, ctx: Context, repetition: int, warmup: bool) -> list[Sample]:
    rows = Rows(backend, case, ctx, repetition, warmup, note=enforcement_note(backend, "cpu"))
    held = hold(backend, case, ctx, rows)
    ready = held.ready_ms()
    if ready is None:
        raise _not_ready("CPU quota", held)
    rows.add("cpu_quota_ready", ready)
    _cpu_rows(rows, held.at_ready)
    return rows.samples


def _cpu_rows(rows: Rows, u: Mapping[str, float]) -> None:
    if "cpu_usage_ns" in u:
        rows.add("startup_cpu", ns_to_ms(u["cpu_usage_ns"]))
    q, p = u.get("cpu_quota_us"), u.get("cpu_period_us")
    if q is not None and p and q >= 0:
        rows.add("cpu_quota_applied", q / p)
    for metric, key, scale in (("nr_periods", "cpu_nr_periods", 1.0), ("nr_throttled", "cpu_nr_throttled", 1.0),
                               ("throttled_ms", "cpu_throttled_ns", 1e-6)):
        if key in u:
            rows.add(metric, u[key] * scale)
    if u.get("cpu_nr_periods"):
        rows.add("throttled_share", u.get("cpu_nr_throttled", 0) / u["cpu_nr_periods"])


def mem_limit(backend: Backend, case: Case, ctx: Context, repetition: int, warmup: bool) -> list[Sample]:
    limit_mib = case.limits.memory_mib
    if limit_mib is None:
        raise ValueError("mem_limit needs a memory limit (grid key limit_mib)")
    rows = Rows(backend, case, ctx, repetition, warmup, note=enforcement_note(backend, "memory"))
    held = hold(backend, case, ctx, rows)
    kills = held.most("oom_kill")
    if kills is None:
        raise BackendError(f"{backend.name} exposes no OOM counter (usage() has no oom_kill): cannot measure "
                           f"mem_limit")
    if held.t_ready is None and not kills:
        raise _not_ready("memory limit", held)
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


def pids_limit(backend: Backend, case: Case, ctx: Context, repetition: int, warmup: bool) -> list[Sample]:
    limit = case.limits.pids
    if limit is None:
        raise ValueError("pids_limit needs a pids limit (grid key limit)")
    rows = Rows(backend, case, ctx, repetition, warmup, note=enforcement_note(backend, "pids"))
    held = hold(backend, case, ctx, rows)
    refused = held.most("pids_refused")
    if held.t_ready is None and not refused:
        raise _not_ready("pids limit", held)
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
