"""A test-only measurement: the whole of what adding a measurement takes (this module plus one
``catalogue().register(INFO, toy, *METRICS)``, or one import line in ``harness.measure``).

It times ``rounds`` launches of the noop workload (launch → ready) and records what its grid
cell was bound to (``level`` → a pids limit), with its own chart, finding, headline figure,
baseline bounds and self-test mutation — every hook a real measurement has.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from harness.measure.common import Rows, launch, ns_to_ms
from harness.metric import LOWER, NONE, GridKey, Headline, MeasurementInfo, Metric, Option
from runtimes.base import Backend, Limits

if TYPE_CHECKING:  # pragma: no cover
    from harness.case import Case
    from harness.measure.context import Context
    from harness.report.chartkit import Chart
    from harness.report.findings import Finding
    from harness.report.model import ReportData
    from harness.results import Sample
    from harness.validate.checks import Case as Checked

NAME = "toy"
METRICS = (
    Metric("toy_ms", "ms", LOWER, NAME, headline=True, peer=True, description="one launch's launch → ready"),
    Metric("toy_limit", "count", NONE, NAME, description="the pids limit the cell was bound to"),
)


def limits(cell: Mapping[str, Any]) -> Limits:
    return Limits(pids=16 * int(cell["level"]))


def chart(data: ReportData, measurement: str) -> Chart | None:
    from harness.report.chartkit import Chart, figure, finish

    rows = data.of(measurement)
    rows = rows[rows["metric"] == "toy_ms"] if not rows.empty else rows
    if rows.empty:
        return None
    fig, axes = figure()
    medians = rows.groupby("series")["value"].median()
    axes[0, 0].barh(list(medians.index), list(medians.values))
    axes[0, 0].set_xlabel("launch → ready (ms)")
    finish(fig, "Toy: launch → ready", data.footnote(), legend=False)
    return Chart(f"{measurement}_launches", "Toy: launch → ready", "The median toy launch per backend.", fig)


def finding(data: ReportData, measurement: str) -> Finding | None:
    from harness.report.findings import Finding

    rows = data.of(measurement)
    if rows.empty:
        return None
    return Finding("Toy", [f"{len(rows[rows['metric'] == 'toy_ms'])} toy launches measured."])


def bounds(c: Checked, metric: str, values: list[float], warnings: list[str]) -> list[dict[str, Any]]:
    return [{"stat": "all", "equals": values[0]}] if metric == "toy_limit" else []


def regress(c: Checked, cores: int) -> dict[str, list[float]] | None:
    """The limit comes out one higher than the cell asked for."""
    return {**c.values, "toy_limit": [v + 1 for v in c.values.get("toy_limit", [])]}


INFO = MeasurementInfo(
    NAME, title="Toy launches", workload="noop", grid={"level": GridKey((int,), 1, 4)},
    options={"rounds": Option((int,), 1, 5, 1, overridable=True)}, limits=limits,
    charts=(chart,), findings=(finding,),
    headline=Headline("toy_ms", ("noop",), "toy launch → ready", "toy (launch → ready)"),
    gated=True, bounds=bounds, mutations={"toy limit one too high": regress})


def toy(backend: Backend, case: Case, ctx: Context, repetition: int, warmup: bool) -> list[Sample]:
    rows = Rows(backend, case, ctx, repetition, warmup)
    for _ in range(int(case.options["rounds"])):
        inst = launch(backend, case, ctx, limits=Limits())  # the bound limit is recorded, not applied
        with inst:
            rows.seen(inst)
            inst.wait_ready(case.timeout_s)
            inst.wait(case.timeout_s)
        assert inst.times.t_ready is not None and inst.times.t_launch is not None
        rows.add("toy_ms", ns_to_ms(inst.times.t_ready - inst.times.t_launch))
    rows.add("toy_limit", float(case.limits.pids or 0))
    return rows.samples
