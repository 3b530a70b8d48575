"""cpu_quota, mem_limit and pids_limit with an image workload: the app started and held under the limit.

A catalog workload is built to push against a limit (stress-ng's threads, its MiB, the pids
workload's forks); an image's app is not, so the question becomes the one a user asks: does
my service start under this limit, how long does it take, and what does the limit's counter
say?  One sample launches the image with the cell's limit, waits for the app's own readiness
(``runtimes.readiness``), holds it ``settle`` seconds reading the counters every
``watch.POLL_S``, then stops it.  The counters are the enforcement mechanism's own
(``inst.usage()``, cumulative from the instance's start):

- cpu_quota (``harness.measure.cpu``): ``cpu_quota_ready`` (launch -> ready under the quota), ``startup_cpu`` (CPU
  time used until ready), the CFS periods and throttling until then, the quota applied;
- mem_limit (``harness.measure.enforcement``): ``oom_killed``, ``mem_peak``, ``mem_failcnt``; ``mem_limit_ready`` when it
  became ready (an app the OOM killer ended first is a result, not a failed sample);
- pids_limit (likewise): ``pids_peak``, ``pids_refused``; ``pids_limit_ready`` when it became ready.

An app that neither became ready nor met its limit (no OOM kill, no refused fork) fails its
sample with the reason.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from harness.measure.common import Rows, ns_to_ms
from harness.measure.watch import POLL_S, read_usage, running
from harness.metric import LOWER, NONE, GridKey, Metric, declare
from runtimes.base import Backend, BackendError, Instance, now_ns

if TYPE_CHECKING:  # pragma: no cover
    from harness.case import Case
    from harness.measure.context import Context

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
    status: int | None = None  # the exit status of an app that did not become ready

    def sigkilled_unread(self) -> bool:
        """It died by SIGKILL before it was ready and its counters went with it (the last read found
        none): a runtime that removes the cgroup of a killed container at once (runc, crun)."""
        return (self.t_ready is None and self.status in (-9, 128 + 9) and bool(self.reads)
                and "oom_kill" not in self.reads[-1])

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
        if held.t_ready is None:
            with contextlib.suppress(BackendError):
                held.status = inst.wait(1.0)
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


#: the note of an OOM kill the counters could not show
INFERRED_OOM = ("OOM kill inferred: the app died by SIGKILL under the memory limit before it was ready, and its "
                "runtime removed the cgroup (with its OOM counter) before the next read")


def not_ready(what: str, held: Held) -> BackendError:
    return BackendError(f"the image workload did not become ready under the {what} and the limit did not act: "
                        f"{held.why}")
