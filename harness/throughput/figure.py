"""The throughput measurement's report: the Felter-style figure, the slope, the findings.

Every figure is a ratio to bare metal (the reference backend) measured in the same run: for a
rate, backend / bare (below 1: the backend does less per second); for a latency (tcp_rr),
backend / bare too (above 1: slower).  Each ratio carries its 95 % interval (a bootstrap of the
ratio of medians, ``harness.stats.estimate.ratio``) or says why it has none.  Emulated guests
(TCG) are drawn hollow and labelled: their ratios are those of an emulator, not of a hypervisor.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import runtimes
from harness.measure.throughput import PREFIX
from harness.report import style
from harness.stats import estimate
from harness.stats.estimate import Estimate
from harness.stats.numbers import times
from harness.throughput import felter
from runtimes.throughput import catalog

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from harness.report.chartkit import Chart
    from harness.report.findings import Finding
    from harness.report.model import ReportData



@dataclass(frozen=True)
class Ratio:
    bench: catalog.Bench
    backend: str
    accel: str | None
    target: str  # storage: what the instances wrote to; else ""
    ratio: Estimate
    median: float

    @property
    def emulated(self) -> bool:
        return self.accel == "tcg"

    @property
    def label(self) -> str:
        bits = [self.backend] + (["TCG, emulated"] if self.emulated else []) + ([self.target] if self.target else [])
        return f"{bits[0]} ({', '.join(bits[1:])})" if len(bits) > 1 else bits[0]


def _col(df: pd.DataFrame, name: str, default: Any) -> pd.Series:
    return df[name] if name in df.columns else df["metric"].map(lambda _: default)


def _single(df: pd.DataFrame) -> pd.DataFrame:
    """Rows of one instance at a time (the ratio figure); the concurrency steps are the slope's."""
    return df[_col(df, "param_instances", 1).fillna(1).astype(int) == 1]


def ratios(data: ReportData, measurement: str) -> list[Ratio]:
    """Every (benchmark, backend, storage target) with its ratio to bare metal, in display order."""
    rows = data.of(measurement)
    ref = runtimes.reference()
    if rows.empty or ref not in set(rows["backend"]):
        return []
    rows = _single(rows)
    out = []
    for bench in catalog.BENCHES:
        mine = rows[rows["metric"] == f"{PREFIX}{bench.name}"]
        base = mine[mine["backend"] == ref]["value"].tolist()
        if mine.empty or not base:
            continue
        targets = _col(mine, "param_target", "").fillna("")
        for (backend, accel, target), group in mine.assign(_t=targets).groupby(
                ["backend", mine["accel"].fillna(""), "_t"], sort=False):
            if backend == ref:
                continue
            values = group["value"].tolist()
            out.append(Ratio(bench, str(backend), str(accel) or None, str(target),
                             estimate.ratio(values, base), statistics.median(values)))
    return sorted(out, key=lambda r: (catalog.BENCHES.index(r.bench), style.backend_rank(r.backend), r.target))


def chart_ratios(data: ReportData, measurement: str) -> Chart | None:
    """The Felter-style figure: every benchmark's ratio to bare, per backend, log scale."""
    from harness.report.chartkit import Chart, figure, finish

    found = ratios(data, measurement)
    if not found:
        return None
    fig, axes = figure(size=(7.0, 0.32 * len(found) + 1.2))
    ax = axes[0, 0]
    labels = []
    for y, r in enumerate(reversed(found)):
        colour = style.colour(r.backend)
        x = r.ratio.value
        if not (math.isfinite(x) and x > 0):
            continue
        err = ([[x - r.ratio.lo], [r.ratio.hi - x]] if r.ratio.resolved else None)
        ax.errorbar([x], [y], xerr=err, fmt="o", color=colour, capsize=2, markersize=5,
                    markerfacecolor="none" if r.emulated or not r.ratio.resolved else colour,
                    label=r.backend + (" (TCG, emulated: hollow)" if r.emulated else ""))
        labels.append(f"{r.bench.name} · {r.label}")
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.set_xscale("log")
    ax.axvline(1.0, color="#333333", linewidth=0.8)
    ax.set_xlabel("ratio to bare metal (rates: <1 slower; tcp_rr latency: >1 slower)")
    finish(fig, "Throughput relative to bare metal", data.footnote(
        ["hollow: an emulated (TCG) guest, or no interval (too few samples)"]), ncol=2)
    return Chart(f"{measurement}_ratios", "Throughput relative to bare metal",
                 "Each benchmark's median on each backend divided by bare metal's, with its 95 % interval "
                 "(bootstrap of the ratio of medians), one instance at a time; log scale.  Hollow markers: "
                 "an emulated (TCG) guest -- its ratio is the emulator's -- or a ratio without an interval.",
                 fig)


def slope_points(data: ReportData, measurement: str) -> dict[tuple[str, str], dict[int, float]]:
    """(family, backend) -> instances -> the median over the family's benchmarks of the per-instance
    figure relative to the same backend with one instance (latency inverted: > 1 is better)."""
    rows = data.of(measurement)
    if rows.empty or "param_instances" not in rows.columns:
        return {}
    out: dict[tuple[str, str], dict[int, list[float]]] = {}
    for bench in catalog.BENCHES:
        mine = rows[rows["metric"] == f"{PREFIX}{bench.name}"]
        for backend, group in mine.groupby("backend"):
            by_n = group.groupby(group["param_instances"].fillna(1).astype(int))["value"].median()
            medians = {int(str(n)): float(v) for n, v in by_n.items()}
            if medians.get(1, 0) <= 0:
                continue
            for n, v in medians.items():
                rel = v / medians[1] if bench.higher else medians[1] / v
                out.setdefault((bench.family, str(backend)), {}).setdefault(n, []).append(rel)
    return {k: {n: statistics.median(v) for n, v in sorted(pts.items())} for k, pts in out.items()
            if len(pts) > 1}


def chart_slopes(data: ReportData, measurement: str) -> Chart | None:
    """Per-instance throughput as instances run at once, relative to one instance, per family."""
    from harness.report.chartkit import Chart, figure, finish

    points = slope_points(data, measurement)
    if not points:
        return None
    families = [f for f in catalog.FAMILIES if any(k[0] == f for k in points)]
    fig, axes = figure(1, len(families), size=(2.4 * len(families) + 1, 3.2), sharey=True)
    for ax, family in zip(axes[0], families, strict=True):
        for (fam, backend), pts in sorted(points.items(), key=lambda kv: style.backend_rank(kv[0][1])):
            if fam == family:
                ax.plot(list(pts), list(pts.values()), marker="o", color=style.colour(backend), label=backend)
        ax.set_title(catalog.FAMILY_TITLES[family])
        ax.set_xlabel("instances at once")
        ax.set_xscale("log", base=2)
    axes[0, 0].set_ylabel("per instance, ÷ one instance")
    finish(fig, "Throughput per instance as instances share the host", data.footnote(
        ["medians over each family's benchmarks; an emulated (TCG) guest's emulator is what shares the host"]))
    return Chart(f"{measurement}_slopes", "Throughput per instance vs instances at once",
                 "Each backend's per-instance figure with N instances running at once, divided by its figure "
                 "with one (latency inverted, so below 1 is worse), median over the family's benchmarks.", fig)


def _ref() -> str:
    """What the ratios are to, in words ("bare metal")."""
    return runtimes.declaration(runtimes.reference()).words


def _lines(found: list[Ratio]) -> Iterator[str]:
    for family in catalog.FAMILIES:
        mine = [r for r in found if r.bench.family == family]
        if not mine:
            continue
        by_backend: dict[str, list[Ratio]] = {}
        for r in mine:
            by_backend.setdefault(r.label, []).append(r)
        parts = ["; ".join(f"{r.bench.name} {times(r.ratio, _ref())}"
                           + ("" if r.ratio.resolved else f" ({r.ratio.unresolved})") for r in rs)
                 for rs in by_backend.values()]
        yield f"{catalog.FAMILY_TITLES[family]} — " + " · ".join(f"{label}: {p}" for label, p in
                                                        zip(by_backend, parts, strict=True))


def findings(data: ReportData, measurement: str) -> Finding | None:
    """A sentence per family: each backend's ratio to bare for each benchmark, with its interval."""
    from harness.report.findings import Finding

    found = ratios(data, measurement)
    if not found:
        return None
    lines = list(_lines(found))
    if any(r.emulated for r in found):
        lines.append("TCG guests are emulated: their ratios measure QEMU's emulator on this host, not a hypervisor; "
                     "on KVM hardware re-run the scenario for the vm rows that mean what Felter's KVM rows mean.")
    return Finding("Throughput — ratio to bare metal, 95 % intervals", lines)


def felter_finding(data: ReportData, measurement: str) -> Finding | None:
    """Felter 2014's published ratios beside ours (their hardware and KVM; ours: this host)."""
    from harness.report.findings import Finding

    found = ratios(data, measurement)
    if not found:
        return None
    lines = [f"Theirs: {felter.SOURCE}; {felter.HARDWARE}; KVM on hardware virtualisation. "
             f"Ours: this host (see the footnotes), the guests as run here (TCG where marked)."]
    for row in felter.ROWS:
        ours = [r for r in found if r.bench.name == row.ours]
        mine = ", ".join(f"{r.label} {times(r.ratio, _ref())}" for r in ours) or "not measured"
        lines.append(f"{row.what}: Docker {felter.shown(row.docker, row.exact)}, KVM {felter.shown(row.kvm, row.exact)}"
                     + (f" ({row.note})" if row.note else "") + f" — ours ({row.ours}): {mine}")
    return Finding("Throughput — Felter 2014 beside ours", lines)
