"""startup: how long from launch to ready, to exit, and until everything is gone.

``noop`` exits by itself right after its ready marker; ``idle`` is stopped as
soon as it is ready, so its exit_to_clean is the teardown of a live instance.
An image workload is ready by its own answer (``runtimes.readiness``); one ready by
its exit is measured like ``noop``, any other is stopped once ready, like ``idle``
(with its stop signal and grace: launch -> exit then includes them, and is not kept).
Every backend-reported phase (``times.phases``, host side and, for VMs,
guest side) becomes a ``phase_<name>`` row.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.measure.common import Rows, launch, ns_to_ms
from harness.metric import LOWER, Headline, MeasurementInfo, Metric, declare, measurement
from runtimes.base import Backend, BackendError, Timestamps

if TYPE_CHECKING:  # pragma: no cover
    from harness.case import Case
    from harness.measure.context import Context
    from harness.results import Sample

declare(
    Metric("launch_to_ready", "ms", LOWER, "startup", headline=True, peer=True,
           description="t_ready - t_launch"),
    Metric("launch_to_exit", "ms", LOWER, "startup", headline=True, peer=True,
           description="t_exit - t_launch (noop: it exits by itself)"),
    Metric("exit_to_clean", "ms", LOWER, "startup", headline=True, peer=True,
           description="t_clean - t_exit"),
    Metric("launch_to_clean", "ms", LOWER, "startup", peer=True, description="t_clean - t_launch"),
    Metric("phase_", "ms", LOWER, "startup", peer=True, prefix=True,
           description="one phase of a launch or teardown, as the backend reports it"),
)


def intervals(times: Timestamps, exited_by_itself: bool) -> dict[str, float]:
    """The startup metrics (ms) from one instance's timestamps; raises if one is missing."""
    missing = [n for n in ("t_launch", "t_ready", "t_exit", "t_clean") if getattr(times, n) is None]
    if missing:
        raise BackendError(f"backend did not record {', '.join(missing)}")
    assert times.t_launch is not None and times.t_ready is not None  # for the type checker
    assert times.t_exit is not None and times.t_clean is not None
    out = {"launch_to_ready": ns_to_ms(times.t_ready - times.t_launch)}
    if exited_by_itself:
        out["launch_to_exit"] = ns_to_ms(times.t_exit - times.t_launch)
    out["exit_to_clean"] = ns_to_ms(times.t_clean - times.t_exit)
    out["launch_to_clean"] = ns_to_ms(times.t_clean - times.t_launch)
    return out


STARTUP = MeasurementInfo(
    "startup", title="Startup latency", timed=True,
    charts=("harness.report.charts_startup:startup_latency", "harness.report.charts_startup:startup_phases"),
    headline=Headline("launch_to_ready", ("noop", "idle"), "launch → ready", "startup (launch → ready)",
                      names_workload=True))


@measurement(STARTUP)
def startup(backend: Backend, case: Case, ctx: Context, repetition: int, warmup: bool) -> list[Sample]:
    rows = Rows(backend, case, ctx, repetition, warmup)
    exits_by_itself = case.workload.exits_by_itself  # noop, or an image workload ready by its exit
    inst = launch(backend, case, ctx)
    with inst:
        rows.seen(inst)
        inst.wait_ready(case.timeout_s)
        if not exits_by_itself:
            inst.stop()
        status = inst.wait(case.timeout_s)
        if exits_by_itself and status != 0:
            raise BackendError(f"{case.workload.name} exited with status {status}")
    # after the with: cleanup has run, t_clean (and any teardown phase) is recorded
    for metric, value in intervals(inst.times, exits_by_itself).items():
        rows.add(metric, value)
    for name, ns in inst.times.phases.items():
        rows.add(name if name.startswith("phase_") else f"phase_{name}", ns_to_ms(ns))
    return rows.samples
