"""Across hosts: what each host is, and each headline figure host by host.

A report over runs from more than one host (a fleet, ``isobench report
results/fleet-<id>``, or runs of several machines given by hand) gets:

- the **Hosts** finding: per host its CPU model and cores, kernel, cgroup version,
  accelerator (the host's own, and how guests ran there: "emulated (TCG)" for a
  guest without KVM) and load (at the start; median while measuring) — the facets
  a difference between hosts may come from;
- the **Across hosts** section: per headline figure (each measurement's declared
  ``Headline``) a table with a row per host (each backend's median with its 95 %
  interval and n, and its ratio to the reference backend *on that host*) and a
  chart faceted by host (a panel per host: every sample of each backend, its median
  and interval).

The numbers are ``findings.rows``' (the headline's), split by host, so the table,
the chart and the findings agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from harness.measure import catalogue
from harness.metric import Headline
from harness.report import chartkit, findings, style
from harness.report.findings import Finding, HeadlineRow
from harness.report.model import ReportData, RunInfo, accel_words
from harness.stats.numbers import stated, times

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from harness.report.render import Section

TITLE = "Across hosts"


@dataclass(frozen=True)
class Facets:
    """One host as a report describes it: the facets a difference between hosts may come from."""

    host: str
    cpu: str
    kernel: str
    cgroup: str
    accelerator: str
    load: str
    emulated: bool = False  # an emulated (TCG) guest: its clock runs under emulation

    def line(self) -> str:
        return (f"{self.host}: {self.cpu} · kernel {self.kernel} · cgroup {self.cgroup} · "
                f"accelerator: {self.accelerator} · load {self.load}")


def several(data: ReportData) -> bool:
    return len({r.hostname for r in data.runs}) > 1


def by_host(data: ReportData) -> bool:
    """Several hosts, their series kept apart by host (``--by host``, a fleet's default)."""
    return several(data) and data.split == "host"


def _cgroup(run: RunInfo) -> str:
    cg = run.host.get("cgroup")
    hybrid = isinstance(cg, dict) and cg.get("hybrid")
    return f"v{run.cgroup_version}" + (" (hybrid)" if hybrid else "")


def _emulated(run: RunInfo) -> bool:
    return run.in_guest and "tcg" in run.accels().values()


def _accelerator(data: ReportData, run: RunInfo) -> str:
    own = str(run.host.get("accelerator") or "none")
    guests = accel_words(data.accels(run))
    where = "this host is an emulated guest (TCG)" if _emulated(run) else ""
    return "; ".join(x for x in (own, where or (f"guests: {guests}" if guests else "")) if x)


def _load(data: ReportData, run: RunInfo) -> str:
    avg = run.host.get("loadavg")
    start = f"{float(avg[0]):.1f} at the start" if isinstance(avg, list) and avg else "not recorded at the start"
    rows = data.rows
    if not rows.empty and "cond_load1" in rows.columns:
        during = rows.loc[rows["run"] == run.run_id, "cond_load1"].dropna()
        if not during.empty:
            return f"{start}, {float(during.median()):.1f} (median) while measuring"
    return start


def facets(data: ReportData) -> list[Facets]:
    out = []
    for run in data.runs:
        cores = run.host.get("cores")
        count = f"{cores} core{'s' if cores != 1 else ''}" if cores else None
        cpu = ", ".join(str(x) for x in (run.host.get("cpu_model") or "CPU ?", count) if x)
        out.append(Facets(run.hostname, cpu, run.kernel, _cgroup(run), _accelerator(data, run), _load(data, run),
                          _emulated(run)))
    return out


def finding(data: ReportData) -> Finding | None:
    """The Hosts finding, when the report covers more than one host."""
    if not several(data):
        return None
    return Finding("Hosts — what each one is (where a difference between them may come from)",
                   [f.line() for f in facets(data)])


def headlines(data: ReportData) -> list[tuple[Headline, list[HeadlineRow]]]:
    """Each declared headline figure with its rows (one per backend and host), in declaration order."""
    head = findings.rows(data)
    out = []
    for measurement, h in catalogue().headlines():
        mine = [r for r in head if r.family == measurement]
        if mine:
            out.append((h, mine))
    return out


def table(rows: list[HeadlineRow], data: ReportData) -> pd.DataFrame:
    """A row per host: its kernel and cgroup version, then per backend the median [95 % CI] (n) and
    the ratio to the reference backend measured on the same host."""
    import pandas as pd

    ref = findings.reference_backend(data) or ""
    by_host = {str(f.host): f for f in facets(data)}
    backends = sorted({r.backend for r in rows}, key=style.backend_rank)
    hosts = list(dict.fromkeys(str(r.split) for r in rows))
    out = []
    for host in hosts:
        f = by_host.get(host)
        line: dict[str, Any] = {"host": host + (" (emulated, TCG)" if f and f.emulated else ""),
                                "kernel": f.kernel if f else "", "cgroup": f.cgroup if f else ""}
        for b in backends:
            r = next((x for x in rows if x.backend == b and str(x.split) == host), None)
            line[b] = stated(r.value, r.unit) if r else "—"
            if b != ref:
                line[f"{b} / {ref}"] = times(r.ratio, ref) if r and r.ratio is not None else "—"
        out.append(line)
    return pd.DataFrame(out)


def chart(data: ReportData, h: Headline, rows: list[HeadlineRow], measurement: str) -> chartkit.Chart | None:
    """A panel per host: each backend's samples (dots), median (bar) and 95 % interval (whisker).
    Timings from inside an emulated guest are not drawn (``ReportData.of``): their panel says so."""
    ok = data.of(measurement)
    wl = rows[0].workload
    sel = ok[(ok["metric"] == h.metric) & (ok["workload"] == wl)] if not ok.empty else ok
    hosts = list(dict.fromkeys(str(r.split) for r in rows))
    if sel.empty or not hosts:
        return None
    backends = sorted({r.backend for r in rows}, key=style.backend_rank)
    unit = rows[0].unit
    cols = min(len(hosts), 3)
    nrows = math.ceil(len(hosts) / cols)
    fig, axes = chartkit.figure(nrows, cols, size=(3.6 * cols, 2.6 * nrows), sharey=True)
    values = [float(v) for v in sel["value"]]
    for ax, host in zip(axes.flat, hosts, strict=False):
        mine = sel[sel["split"].astype(str) == host]
        if mine.empty:
            ax.text(0.5, 0.5, "timed inside an emulated (TCG) guest:\nnot drawn (numbers in the table)",
                    transform=ax.transAxes, ha="center", va="center", fontsize=7.5, color="#555555")
        for i, b in enumerate(backends):
            v = mine.loc[mine["backend"] == b, "value"].astype(float)
            if v.empty:
                continue
            jitter = [i + 0.25 * ((k % 7) / 6 - 0.5) for k in range(len(v))]
            ax.plot(jitter, v, "o", color=style.colour(b), alpha=0.45, markersize=3)
            r = next(x for x in rows if x.backend == b and str(x.split) == host)
            e = r.value
            yerr = [[max(e.value - e.lo, 0)], [max(e.hi - e.value, 0)]] if e.resolved else None
            ax.errorbar([i], [e.value], yerr=yerr, fmt="_", color="#222222", markersize=18, capsize=4,
                        label=b if host == hosts[0] else "_")
        ax.set_xticks(range(len(backends)))
        ax.set_xticklabels(backends)
        ax.set_xlim(-0.6, len(backends) - 0.4)
        ax.set_title(host, fontsize=9, loc="left")
        ax.set_ylabel(f"{h.metric} ({unit})")
    for ax in list(axes.flat)[len(hosts):]:
        ax.set_visible(False)
    if chartkit.wants_log(values):
        for ax in axes.flat:
            ax.set_yscale("log")
    title = f"{measurement.capitalize()} by host — {h.what} ({wl}), every sample, median and 95 % CI"
    chartkit.finish(fig, title, data.footnote(), legend=False)
    caption = (f"One panel per host: each backend's {h.metric} samples (dots), their median (black bar) and its "
               "95 % interval (whisker; none where too few samples).")
    return chartkit.Chart(f"hosts_{measurement}", title, caption, fig)


def section(data: ReportData, out: Any) -> Section | None:
    """The Across hosts section (tables under ``tables/hosts_<measurement>.csv``), or None for one host."""
    from harness.report import render

    if not by_host(data):
        return None
    sec = render.Section(TITLE, intro="Each headline figure host by host: every backend's median with its 95 % "
                                      "interval and n, and its ratio to the reference measured on the same host "
                                      "(the Hosts finding above says what each host is).")
    for h, rows in headlines(data):
        measurement = rows[0].family
        c = chart(data, h, rows, measurement)
        if c is not None:
            chartkit.save(c, out / "charts")
            sec.figures.append(render.Figure(c.name, c.title, c.caption))
        t = table(rows, data)
        t.to_csv(out / "tables" / f"hosts_{measurement}.csv", index=False)
        sec.tables.append(render.Table(f"{measurement.capitalize()} — {h.what} ({rows[0].workload}), per host", t,
                                       f"tables/hosts_{measurement}.csv"))
    if not sec.tables:
        sec.empty = "No headline figure was measured on these hosts."
    return sec
