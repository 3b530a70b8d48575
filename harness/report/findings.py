"""The findings at the top of a report: a few sentences generated from the data.

Every number a sentence states carries its 95 % interval and sample size, or
says why it has none ("too few samples"); ratios are to the reference backend
(``runtimes.reference()``, bare metal) measured in the same run.  The same numbers feed the headline
chart (``headline.rows``), so the chart and the text cannot disagree.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import runtimes
from harness.measure import catalogue
from harness.metric import Headline
from harness.report import placement, style
from harness.report.model import ReportData
from harness.stats import MIN_N_CI, estimate
from harness.stats.estimate import Estimate
from harness.stats.numbers import quantity, stated, times
from runtimes.declaration import resolve

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd



def reference_backend(data: ReportData) -> str | None:
    """The backend every ratio is taken to: the reference backend (bare metal) if it ran, else the
    first that ran in the registry's order (a peers run compares with our own container)."""
    ran = set(data.rows["backend"]) if not data.rows.empty else set()
    first = runtimes.reference()
    if first in ran:
        return first
    return next((b for b in runtimes.names() if b in ran), None)


@dataclass(frozen=True)
class HeadlineRow:
    family: str  # the measurement whose headline figure it is (``MeasurementInfo.headline``)
    series: str
    backend: str
    split: Any
    workload: str
    unit: str
    value: Estimate  # the series' own median
    ratio: Estimate | None  # to the reference; None for the reference itself or when it is absent


@dataclass
class Finding:
    title: str
    lines: list[str] = field(default_factory=list)
    link: str = ""  # an anchor of the page the lines point to (the warnings)


def ok_rows(data: ReportData) -> pd.DataFrame:
    r = data.rows
    return r[r["status"] == "ok"] if not r.empty else r


def _same_split(df: pd.DataFrame, split: Any) -> pd.DataFrame:
    return df[df["split"].isna()] if style.is_missing(split) else df[df["split"] == split]


def rows(data: ReportData) -> list[HeadlineRow]:
    """Each backend's headline numbers and their ratios to the reference, per measurement."""
    ok = ok_rows(data)
    if ok.empty:
        return []
    ref = reference_backend(data)
    out: list[HeadlineRow] = []
    for measurement, head in catalogue().headlines():
        sel = ok[(ok["measurement"] == measurement) & (ok["metric"] == head.metric)]
        wl = next((w for w in head.workloads if w in set(sel["workload"])), None)
        if wl is None:
            continue
        sel = sel[sel["workload"] == wl].sort_values("seq" if "seq" in sel.columns else "value")
        for (series, backend, split), g in by_series(sel):
            own = estimate.median(g["value"])
            base = _same_split(sel[sel["backend"] == ref], split) if ref else sel.iloc[0:0]
            ratio = None if backend == ref or base.empty else estimate.ratio(g["value"], base["value"])
            out.append(HeadlineRow(measurement, series, backend, split, wl, str(g["unit"].iloc[0]), own, ratio))
    return out


def by_series(df: pd.DataFrame) -> list[tuple[tuple[str, str, Any], pd.DataFrame]]:
    """((series, backend, split), rows) per series, in the backends' order."""
    groups = [((str(s), str(g["backend"].iloc[0]), g["split"].iloc[0]), g) for s, g in df.groupby("series", sort=False)]
    return sorted(groups, key=lambda t: (style.backend_rank(t[0][1]), str(t[0][2])))


def rank(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` in the backends' order."""
    backends = [str(b) for b in df["backend"]]
    return df.iloc[sorted(range(len(df)), key=lambda i: style.backend_rank(backends[i]))]


# -- words ------------------------------------------------------------------------------
def unresolved(*estimates: Estimate | None) -> str:
    """`` — not resolved: too few samples for a 95 % interval (n ≥ 6 needed)`` when any estimate lacks one."""
    why = next((e.unresolved for e in estimates if e is not None and not e.resolved), None)
    if why is None:
        return ""
    if why.startswith("too few"):
        return f" — not resolved: too few samples for a 95 % interval (n ≥ {MIN_N_CI} needed)"
    return f" — not resolved: {why or 'no interval'}"


# -- the findings ---------------------------------------------------------------------------
def findings(data: ReportData, warnings: int = 0) -> list[Finding]:
    """Per measurement in declaration order its headline figure and its own findings (those of one
    title, such as the limits of "Enforcement", merged into one), then peers, the floor, caveats."""
    head = rows(data)
    ref = reference_backend(data) or ""
    out: list[Finding] = []
    for info in catalogue().measurements.values():
        own = [_headline(head, info.name, info.headline, ref)] if info.headline and info.headline.finding else []
        own += [resolve(fn)(data, info.name) for fn in info.findings]
        for f in own:
            if f is None or not f.lines:
                continue
            if out and out[-1].title == f.title:
                out[-1].lines += f.lines
            else:
                out.append(f)
    out += [f for f in (_peers(data), _floor(data)) if f is not None and f.lines]
    if warnings:
        out.append(Finding("Caveats", [f"{warnings} warning{'s' if warnings != 1 else ''} about these numbers "
                                       "(listed under Warnings below)."], link="#warnings"))
    return out


def _headline(head: list[HeadlineRow], measurement: str, figure: Headline, ref: str) -> Finding | None:
    mine = [h for h in head if h.family == measurement]
    if not mine:
        return None
    where = f" ({mine[0].workload} workload)" if figure.names_workload else ""
    f = Finding(f"{measurement.capitalize()} — {figure.what}{where}, medians with 95 % intervals")
    for h in mine:
        line = f"{h.series}: {stated(h.value, h.unit)}"
        if h.ratio is not None:
            line += f", {times(h.ratio, ref)}"
        elif h.backend == ref:
            line += " (the reference)"
        f.lines.append(line + unresolved(h.value, h.ratio))
    return f


def _peers(data: ReportData) -> Finding | None:
    from harness.report import tables

    peers = tables.peer_ratios(data)
    if peers.empty:
        return None
    sel = peers[peers["metric"].isin(["launch_to_ready", "pss"])]
    # one workload per metric, the one the headline uses
    prefer = {h.metric: h.workloads[0] for _, h in catalogue().headlines()}
    sel = sel[[w == prefer.get(m, w) or not (sel["metric"] == m).any() for m, w in zip(sel["metric"], sel["workload"],
                                                                                         strict=True)]]
    f = Finding("Peers: median ratio to our own runtime of the same kind")
    for _, r in sel.iterrows():
        e = placement.estimate(r)
        f.lines.append(f"{r['peer']}, {r['metric']} ({r['workload']}): {times(e, str(r['reference']))}"
                       + unresolved(e))
    f.lines += placement.lines(sel)  # where our runtime sits among them (bwrap … runsc)
    return f


def _floor(data: ReportData) -> Finding | None:
    from harness.report import tables

    fl = tables.floor_ratios(data)
    if fl.empty:
        return None
    r = fl.iloc[0]
    n = int(min(r["n_floor"], r["n_startup"]))
    why = ("" if n >= MIN_N_CI else "the floor is a single lower bound, so the ratio has no interval"
           if r["n_floor"] < MIN_N_CI else "too few samples")
    e = Estimate(r["ratio"], r["ci_lo"], r["ci_hi"], n, why)
    floor = r["floor"].split(" · ")[-1]
    if isinstance(r.get("invalid"), str):
        return Finding("Floor", [f"{r['startup']}: median {quantity(r['startup median (ms)'], 'ms')} is below "
                                 f"{floor} ({quantity(r['floor median (ms)'], 'ms')}): the floor is invalid "
                                 "(it counts a step this launch avoids or overlaps), so no ratio is given"])
    return Finding("Floor", [f"{r['startup']}: {times(e, floor)}{unresolved(e)} ({floor} = "
                             f"{quantity(r['floor median (ms)'], 'ms')}, a lower bound: the critical path of the "
                             "kernel primitives of a launch, timed on the same host)"])


def plain(findings: Iterable[Finding]) -> str:
    """The findings as plain text (for a terminal or a test)."""
    return "\n".join(f"{f.title}\n" + "\n".join(f"  - {ln}" for ln in f.lines) for f in findings)
