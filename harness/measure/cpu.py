"""cpu_quota: does the backend deliver the CPU quota, over the window and period by period?

The CPU counters are read just before each CFS period boundary (``periods``),
so the window is a whole number of periods as the kernel counted them, and each
period's delivery is known.  Expected CPU comes from the quota the enforcer
applied, read back from its counters, not from the request.  The workload must
run through the window and end by itself with status 0, or the sample fails.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from harness.measure import limits_image, periods
from harness.measure.common import Rows, enforcement_note, guest_report, is_guest, ns_to_ms, reported
from harness.measure.watch import Usage, delta, failed_workload, finished_ok, read_usage, running
from harness.metric import (
    NONE,
    ONE,
    GridKey,
    Headline,
    MeasurementInfo,
    Metric,
    declare,
    measurement,
)
from harness.stats.quantile import quantile
from runtimes.base import Backend, BackendError, Instance, Limits

if TYPE_CHECKING:  # pragma: no cover
    from harness.case import Case
    from harness.measure.context import Context
    from harness.results import Sample

_NUM = (int, float)


def limits(cell: Mapping[str, Any]) -> Limits:
    """The cell's quota, period, weight and burst."""
    return Limits(cpu_quota=float(cell["quota"]), cpu_period_us=round(float(cell.get("period_ms", 100)) * 1000),
                  cpu_weight=int(cell["weight"]) if "weight" in cell else None,
                  cpu_burst_us=round(float(cell["burst_ms"]) * 1000) if "burst_ms" in cell else None)


_SELFTEST = "harness.validate.selftest"
CPU_QUOTA = MeasurementInfo(
    "cpu_quota", title="CPU quota enforcement", workload="cpu", single_shot=True, grid={
        "quota": GridKey(_NUM, 1e-3, 1024), "threads": GridKey((int,), 1, 1024),
        "period_ms": GridKey(_NUM, 1, 1000, required=False),
        # the cell's CPU weight (cgroup v2 scale, 100 = default): high, so the quota binds, not neighbours
        "weight": GridKey((int,), 1, 10_000, required=False),
        # CFS burst (Linux >= 5.14): quota carried over from idle periods; a busy workload never has any
        "burst_ms": GridKey(_NUM, 0, 1000, required=False)},
    workload_keys=("threads",), limits=limits,  # busy threads under the quota
    images=limits_image.CPU_GRID,  # an app started under the quota: the quota's keys alone
    charts=("harness.report.charts_enforcement:cpu_quota", "harness.report.charts_enforcement:cpu_ratio",
            "harness.report.charts_periods:cpu_periods"),
    findings=("harness.report.findings_enforcement:cpu_quota",),
    headline=Headline("cpu_ratio", ("cpu",), "CPU delivered / expected, all quota cells", "CPU delivered / expected",
                      finding=False),  # the enforcement finding states it, cell by cell
    gated=True, bounds="harness.validate.derive:cpu_quota_bounds",
    mutations={"quota ignored": f"{_SELFTEST}:quota_ignored", "3 % under-delivery": f"{_SELFTEST}:under_delivery",
               "3 % over-delivery": f"{_SELFTEST}:over_delivery",
               "missing CPU counter": f"{_SELFTEST}:missing_counter"})

declare(
    Metric("cpu_ratio", "ratio", ONE, "cpu_quota", headline=True, peer=True,
           description="cpu_delivered / cpu_expected: 1 is perfect enforcement"),
    Metric("cpu_delivered", "cpus", NONE, "cpu_quota", peer=True,
           description="Δ(cgroup CPU usage) / window, the window a whole number of CFS periods"),
    Metric("cpu_expected", "cpus", NONE, "cpu_quota",
           description="min(applied quota, threads, cores, vCPUs)"),
    Metric("cpu_quota_applied", "cpus", NONE, "cpu_quota",
           description="the quota the enforcer applied, read back (quota_us / period_us)"),
    Metric("window_s", "s", NONE, "cpu_quota", description="length of the counting window"),
    Metric("cpu_burst_applied_ms", "ms", NONE, "cpu_quota", description="the CFS burst applied, read back"),
    Metric("nr_periods", "count", NONE, "cpu_quota", description="CFS periods in the window"),
    Metric("nr_throttled", "count", NONE, "cpu_quota", description="periods the group was throttled in"),
    Metric("throttled_share", "ratio", NONE, "cpu_quota", description="nr_throttled / nr_periods"),
    Metric("throttled_ms", "ms", NONE, "cpu_quota", description="time spent throttled in the window"),
    Metric("period_ratio_p", "ratio", NONE, "cpu_quota", prefix=True,
           description="percentile (p1, p50, p99) of CPU delivered in one period ÷ the quota"),
    Metric("period_coverage", "ratio", NONE, "cpu_quota",
           description="share of the window's periods resolved one by one"),
    Metric("read_jitter_p99", "us", NONE, "cpu_quota",
           description="99th percentile of how far a per-period read fell from its target"),
    Metric("guest_cpu_delivered", "cpus", NONE, "cpu_quota",
           description="CPUs busy as the guest's kernel counts them, whole run"),
)

#: the per-period series of every cpu_quota sample, one JSON line each, beside the logs
PERIODS_FILE = "cpu-periods.jsonl"


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


@measurement(CPU_QUOTA)
def cpu_quota(backend: Backend, case: Case, ctx: Context, repetition: int, warmup: bool) -> list[Sample]:
    if case.workload.image is not None:  # an app under the quota (limits_image)
        return _image(backend, case, ctx, repetition, warmup)
    bound = case.workload.bound()
    threads, seconds = int(bound["threads"]), float(bound["seconds"])
    lead, end = cpu_window(seconds)
    rows = Rows(backend, case, ctx, repetition, warmup, note=enforcement_note(backend, "cpu"))
    spec = ctx.spec(backend, case.workload, case.limits, case.timeout_s)
    what = f"{case.workload.name} ({threads} thread{'s' if threads > 1 else ''})"
    with running(ctx, backend, spec) as (inst, watch):
        rows.seen(inst)
        guest = is_guest(backend)
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
    samples = _cpu_rows(rows, ctx, series, quota, quota_note, threads, spec.vcpus if guest else None, report)
    burst = u0.get("cpu_burst_us")
    if burst:  # CFS burst the enforcer applied (a busy workload has no idle periods to bank it from)
        rows.add("cpu_burst_applied_ms", burst / 1000)
    return samples


def _cpu_rows(rows: Rows, ctx: Context, series: periods.Series, quota: float | None, quota_note: str | None,
              threads: int, vcpus: int | None, report: Mapping[str, Any]) -> list[Sample]:
    """The cpu_quota rows from one window's phase-locked reads."""
    try:
        win = periods.window(series)
    except ValueError as e:
        raise BackendError(f"cpu counters: {e}") from e
    expected = cpu_expected(quota, threads, host_cores(), vcpus)
    note = "; ".join(filter(None, [rows.note, quota_note, win.note]))
    rows.add("cpu_delivered", win.delivered, note=note or None)
    rows.add("cpu_expected", expected, note=note or None)
    rows.add("cpu_ratio", win.delivered / expected, note=note or None)
    rows.add("window_s", win.seconds)
    if quota is not None:
        rows.add("cpu_quota_applied", quota)
    n = win.delta("periods")
    for metric, attr, scale in (("nr_periods", "periods", 1.0), ("nr_throttled", "throttled", 1.0),
                                ("throttled_ms", "throttled_ns", 1e-6)):
        d = win.delta(attr)
        if d is not None:
            rows.add(metric, d * scale)
    throttled = win.delta("throttled")
    if n and throttled is not None:
        rows.add("throttled_share", throttled / n)
    per = periods.per_period(series, (quota or 0) * series.period_ns)
    if per:
        for q in (0.01, 0.5, 0.99):
            rows.add(f"period_ratio_p{round(q * 100)}", quantile(per, q))
        jit = periods.jitter_us(series)
        if jit:
            rows.add("read_jitter_p99", quantile(jit, 0.99),
                     note=None if series.realtime else "reads not real-time (SCHED_FIFO refused)")
        if n:
            rows.add("period_coverage", len(per) * series.stride / n)
        _store_periods(rows, ctx, series, quota, periods.indexed_periods(series, (quota or 0) * series.period_ns))
    view = reported(report, "guest_cpu_delivered")  # computed by the guest's runtime, stored as is
    if view is not None:
        rows.add("guest_cpu_delivered", view, note="as the guest's kernel counts it, whole run")
    return rows.samples


def _store_periods(rows: Rows, ctx: Context, series: periods.Series, quota: float | None,
                   per: list[tuple[int, float]]) -> None:
    """Append this sample's per-period series to the run's PERIODS_FILE (the report charts it)."""
    line = {"backend": rows.backend.name, "case": rows.case.id, "measurement": rows.case.measurement,
            "params": dict(rows.case.params), "repetition": rows.repetition, "warmup": rows.warmup,
            "accel": rows.accel, "period_ms": series.period_ns / 1e6, "stride": series.stride,
            "quota": quota, "period": [k for k, _ in per], "ratios": [round(r, 4) for _, r in per]}
    with contextlib.suppress(OSError):  # the figures are in the rows; the series is extra detail
        ctx.log_dir.mkdir(parents=True, exist_ok=True)
        with open(ctx.log_dir / PERIODS_FILE, "a") as f:
            f.write(json.dumps(line) + "\n")


def _image(backend: Backend, case: Case, ctx: Context, repetition: int, warmup: bool) -> list[Sample]:
    """cpu_quota with an image workload: the app started under the quota (``limits_image``)."""
    rows = Rows(backend, case, ctx, repetition, warmup, note=enforcement_note(backend, "cpu"))
    held = limits_image.hold(backend, case, ctx, rows)
    ready = held.ready_ms()
    if ready is None:
        raise limits_image.not_ready("CPU quota", held)
    rows.add("cpu_quota_ready", ready)
    _startup_rows(rows, held.at_ready)
    return rows.samples


def _startup_rows(rows: Rows, u: Mapping[str, float]) -> None:
    """The CPU counters an image's start left: its CPU time, the quota, the CFS periods and throttling."""
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
