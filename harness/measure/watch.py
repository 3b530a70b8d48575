"""Running a limited workload and holding it to account: what cpu_quota, mem_limit and
pids_limit share.

Counters are read through ``inst.usage()`` while the instance is alive (they vanish
with it at cleanup).  A workload proves it did its work by ending by itself with
status 0 (it reports the status on the marker channel, ``runtimes.workloads``);
one that did not fails its sample with the reason and where its log is, so a
failed workload can never become a row with status ok.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from harness.measure.common import ExitWatch, reported
from runtimes.base import Backend, BackendError, Instance, LaunchSpec, now_ns

if TYPE_CHECKING:  # pragma: no cover
    from harness.measure.context import Context

#: how often counters are read while a workload runs (cpu_quota reads once per CFS period)
POLL_S = 0.01

Usage = Mapping[str, float]


def delta(before: Usage, after: Usage, key: str) -> float | None:
    """How much counter ``key`` grew between two readings; None if either lacks it."""
    if key not in before or key not in after:
        return None
    return float(after[key]) - float(before[key])


def reported_int(report: Mapping[str, Any], key: str) -> int | None:
    value = reported(report, key)
    return int(value) if value is not None else None


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
def running(ctx: Context, backend: Backend, spec: LaunchSpec) -> Iterator[tuple[Instance, ExitWatch]]:
    """Launch ``spec``; yield the instance and its (not yet started) exit watch.

    On the way out the instance is cleaned up first (which ends the workload),
    then the watch's thread is joined."""
    with contextlib.ExitStack() as stack:
        watch = ExitWatch()
        stack.callback(watch.join)
        inst = stack.enter_context(ctx.launch(backend, spec))
        yield inst, watch


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
