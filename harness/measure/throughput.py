"""throughput: what isolation costs a running workload (Felter et al., IBM RC25482, 2014).

One sample runs the ``throughput`` workload's benchmark families -- CPU, memory, kernel
paths, storage, network (``runtimes.throughput.catalog``) -- on ``instances`` instances of
the backend at once (``harness.throughput.session``): every instance runs the same tools
from the same bytes, each benchmark for ``seconds``, started together through a gate; the
network benchmarks' clients run on the host in namespaces isobench made, against servers in
the instances.  Each benchmark gives one row per sample: the mean rate per instance
(``tp_<benchmark>``, in the tool's own unit), or a failed row with the tool's reason when
any instance's run did not count (``runtimes.throughput.parse``).  The report states each
as a ratio to bare metal with its 95 % interval (``harness.throughput.figure``).

Grid keys: ``instances`` (1 by default; 2 and 4 give the per-instance slope) and ``layer``
(1: a container's storage benchmarks write to its own writable root instead of the volume).
Option ``cpus``: pin every instance to the first N CPUs the harness may use (0: not pinned).
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from harness.measure.common import Rows, is_guest
from harness.metric import (
    CATALOGUE,
    HIGHER,
    LOWER,
    GridKey,
    MeasurementInfo,
    Metric,
    Option,
    declare,
    measurement,
)
from harness.results import Sample
from runtimes.base import Backend, Instance
from runtimes.throughput import catalog
from runtimes.throughput.catalog import BENCHES, Bench

if TYPE_CHECKING:  # pragma: no cover
    from harness.case import Case
    from harness.measure.context import Context

NAME = "throughput"
PREFIX = "tp_"
_REPORT = "harness.throughput.figure"
THROUGHPUT = MeasurementInfo(
    NAME, title="Throughput: what isolation costs a running workload", workload=catalog.WORKLOAD,
    grid={"instances": GridKey((int,), 1, 64, required=False), "layer": GridKey((int,), 0, 1, required=False)},
    options={"cpus": Option((int,), 0, 4096, 0)},
    charts=(f"{_REPORT}:chart_ratios", f"{_REPORT}:chart_slopes"),
    findings=(f"{_REPORT}:findings", f"{_REPORT}:felter_finding"))

#: one benchmark per family in the terminal summary at the end of ``isobench run``
SUMMARISED = ("matrix", "stream", "syscall", "randread", "tcp_rr")
declare(*(Metric(f"{PREFIX}{b.name}", b.unit, HIGHER if b.higher else LOWER, NAME, peer=True,
                 headline=b.name in SUMMARISED,
                 description=f"{b.what}; per instance, mean over the instances of the sample") for b in BENCHES))


def metric(bench: Bench) -> str:
    return f"{PREFIX}{bench.name}"


def bench_of(metric_name: str) -> Bench | None:
    """The benchmark a row's metric is (None: not one of ours)."""
    return catalog.BY_NAME.get(metric_name.removeprefix(PREFIX)) if metric_name.startswith(PREFIX) else None


def plan(case: Case) -> Any:
    """The sample a case asks for (``harness.throughput.session.Plan``)."""
    from harness.throughput.session import Plan

    bound = case.workload.bound()
    families = {f for f in catalog.FAMILIES if int(bound.get(f, 0))}
    if not families:
        raise ValueError("the throughput workload runs no benchmark family (cpu, memory, kernel, storage, "
                         "network are all 0)")
    cpus = int(case.options.get("cpus", 0))
    allowed = sorted(os.sched_getaffinity(0))
    if cpus > len(allowed):
        raise ValueError(f"cpus = {cpus}, but this host lets the harness use {len(allowed)} CPUs")
    return Plan(tuple(b for b in BENCHES if b.family in families), int(bound["seconds"]),
                instances=int(case.params.get("instances", 1)), layer=bool(case.params.get("layer", 0)),
                size_mib=int(bound["size_mib"]), cpus=tuple(allowed[:cpus]))


@measurement(THROUGHPUT)
def throughput(backend: Backend, case: Case, ctx: Context, repetition: int, warmup: bool) -> list[Sample]:
    if case.workload.name != catalog.WORKLOAD:
        raise ValueError(f"{NAME} runs the {catalog.WORKLOAD!r} workload only, not {case.workload.name!r}")
    from harness.throughput import session  # pyroute2 and the tools' plumbing: only where it runs

    p = plan(case)
    rows = Rows(backend, case, ctx, repetition, warmup)

    def launch(extra: Mapping[str, Any]) -> Instance:
        inst = ctx.launch(backend, ctx.spec(backend, case.workload, case.limits, case.timeout_s, **extra))
        rows.seen(inst)
        return inst

    outcomes = session.run(launch, is_guest(backend), ctx.run_id, p, case.timeout_s)
    # what the by-hand cross-check repeats (tools/crosscheck_throughput.py): duration, file, CPUs
    common = {"seconds": p.seconds, "size_mib": p.size_mib, "cpus": ",".join(map(str, p.cpus))}
    out: list[Sample] = []
    for bench in p.benches:
        params: dict[str, Any] = dict(common)
        if bench.family == "storage":
            # what the instances' storage benchmarks wrote to (host, disk, layer, volume)
            params["target"] = ",".join(sorted({o.target or "?" for o in outcomes}))
        failures = [f"instance {k}: {o.failures[bench.name]}" for k, o in enumerate(outcomes) if bench.name in o.failures]
        values = [o.readings[bench.name].value for o in outcomes if bench.name in o.readings]
        if failures or len(values) != len(outcomes):
            out.append(_failed(rows, metric(bench), "; ".join(failures) or "no reading", params))
            continue
        rows.add(metric(bench), statistics.fmean(values), **params)
        out.append(rows.samples[-1])
    return out


def _failed(rows: Rows, name: str, error: str, params: Mapping[str, Any]) -> Sample:
    """The failed row of one benchmark: its sample does not count, with the tool's reason."""
    return Sample(backend=rows.backend.name, workload=rows.case.workload.name, measurement=rows.case.measurement,
                  metric=name, value=None, unit=CATALOGUE.unit(name), params={**rows.case.params, **params},
                  repetition=rows.repetition, warmup=rows.warmup, status="failed", error=error,
                  accel=rows.accel or rows.ctx.accel.get(rows.backend.name), case=rows.case.id)
