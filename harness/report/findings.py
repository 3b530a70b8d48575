"""The findings at the top of a report: a few sentences generated from the data.

Every number a sentence states carries its 95 % interval and sample size, or
says why it has none ("too few samples"); ratios are to the reference backend
(bare metal) measured in the same run.  The same numbers feed the headline
chart (``headline.rows``), so the chart and the text cannot disagree.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import runtimes
from harness.report import style
from harness.report.model import ReportData
from harness.stats import MIN_N_CI, estimate
from harness.stats.estimate import Estimate
from harness.stats.numbers import quantity, stated, times

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

#: family -> (measurement, metric, workloads in order of preference, what the number is)
HEADLINE: dict[str, tuple[str, str, tuple[str, ...], str]] = {
    "startup": ("startup", "launch_to_ready", ("noop", "idle"), "launch → ready"),
    "memory": ("memory", "pss", ("idle",), "host memory (PSS) of an idle instance"),
    "enforcement": ("cpu_quota", "cpu_ratio", ("cpu",), "CPU delivered / expected, all quota cells"),
}
#: a CPU quota cell counts as delivered when its median is this close to the expected CPU
CPU_TOLERANCE = 0.05
#: below this share of throttled periods a CPU under-delivery is the busy host's doing, not the quota's
THROTTLED_SHARE = 0.8
NOT_JUDGED = f"the busy host kept the workload below its quota (throttled in < {THROTTLED_SHARE:.0%} of periods)"


def reference_backend(data: ReportData) -> str | None:
    """The backend every ratio is taken to: the one declared the reference (bare metal) if it ran,
    else the first that ran in the registry's order (a peers run compares with our own container)."""
    ran = set(data.rows["backend"]) if not data.rows.empty else set()
    first = runtimes.memory_reference()
    if first in ran:
        return first
    return next((b for b in runtimes.names() if b in ran), None)


@dataclass(frozen=True)
class HeadlineRow:
    family: str
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


def _ok(data: ReportData) -> pd.DataFrame:
    r = data.rows
    return r[r["status"] == "ok"] if not r.empty else r


def _same_split(df: pd.DataFrame, split: Any) -> pd.DataFrame:
    return df[df["split"].isna()] if style.is_missing(split) else df[df["split"] == split]


def rows(data: ReportData) -> list[HeadlineRow]:
    """Each backend's headline numbers and their ratios to the reference, per family."""
    ok = _ok(data)
    if ok.empty:
        return []
    ref = reference_backend(data)
    out: list[HeadlineRow] = []
    for family, (measurement, metric, workloads, _) in HEADLINE.items():
        sel = ok[(ok["measurement"] == measurement) & (ok["metric"] == metric)]
        wl = next((w for w in workloads if w in set(sel["workload"])), None)
        if wl is None:
            continue
        sel = sel[sel["workload"] == wl].sort_values("seq" if "seq" in sel.columns else "value")
        for (series, backend, split), g in _series(sel):
            own = estimate.median(g["value"])
            base = _same_split(sel[sel["backend"] == ref], split) if ref else sel.iloc[0:0]
            ratio = None if backend == ref or base.empty else estimate.ratio(g["value"], base["value"])
            out.append(HeadlineRow(family, series, backend, split, wl, str(g["unit"].iloc[0]), own, ratio))
    return out


def _series(df: pd.DataFrame) -> list[tuple[tuple[str, str, Any], pd.DataFrame]]:
    groups = [((str(s), str(g["backend"].iloc[0]), g["split"].iloc[0]), g) for s, g in df.groupby("series", sort=False)]
    return sorted(groups, key=lambda t: (style.backend_rank(t[0][1]), str(t[0][2])))


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
    head = rows(data)
    ref = reference_backend(data) or ""
    out = [f for f in (_headline(head, "startup", ref), _headline(head, "memory", ref), _density(data),
                       _enforcement(data)) if f is not None and f.lines]
    out += [f for f in (_peers(data), _floor(data)) if f is not None and f.lines]
    if warnings:
        out.append(Finding("Caveats", [f"{warnings} warning{'s' if warnings != 1 else ''} about these numbers "
                                       "(listed under Warnings below)."], link="#warnings"))
    return out


def _headline(head: list[HeadlineRow], family: str, ref: str) -> Finding | None:
    mine = [h for h in head if h.family == family]
    if not mine:
        return None
    measurement, metric, _, what = HEADLINE[family]
    where = f" ({mine[0].workload} workload)" if family == "startup" else ""
    f = Finding(f"{family.capitalize()} — {what}{where}, medians with 95 % intervals")
    for h in mine:
        line = f"{h.series}: {stated(h.value, h.unit)}"
        if h.ratio is not None:
            line += f", {times(h.ratio, ref)}"
        elif h.backend == ref:
            line += " (the reference)"
        f.lines.append(line + unresolved(h.value, h.ratio))
    return f


def _density(data: ReportData) -> Finding | None:
    """The pooled slope per backend with its interval, or "not resolved"; both methods when stored."""
    s = data.summary
    if s.empty:
        return None
    d = s[(s["measurement"] == "density") & (s["n"] > 0)]
    slopes = d[d["metric"] == "density_slope"]
    if slopes.empty:
        return None

    def value(series: str, metric: str) -> float | None:
        m = d[(d["series"] == series) & (d["metric"] == metric)]
        return float(m["median"].iloc[0]) if not m.empty else None

    def figure(series: str, slope: str, lo: str, hi: str) -> str | None:
        v, a, b = value(series, slope), value(series, lo), value(series, hi)
        if v is None or a is None or b is None:
            return None
        if b - a > abs(v):  # wider than the figure itself: no number
            return f"not resolved ([{a:.2g}, {b:.2g}])"
        return f"{quantity(v, 'MiB')} [{a:.2g}–{b:.2g}]"

    parts = []
    for _, r in _rank(slopes).iterrows():
        host = figure(r["series"], "density_pooled_slope", "density_pooled_lo", "density_pooled_hi")
        cg = figure(r["series"], "density_charged_pooled", "density_charged_pooled_lo", "density_charged_pooled_hi")
        if host is None:  # an older run: one least-squares fit per repetition, no interval
            parts.append(f"{r['series']} {quantity(r['median'], 'MiB')} (no interval)")
        else:
            parts.append(f"{r['series']} {host} by MemAvailable" + (f", {cg} by its cgroup's charge" if cg else ""))
    return Finding("Density: host memory per additional idle instance (Theil–Sen slope, all ramps pooled)",
                   ["; ".join(parts) + "."])


def _rank(df: pd.DataFrame) -> pd.DataFrame:
    backends = [str(b) for b in df["backend"]]
    return df.iloc[sorted(range(len(df)), key=lambda i: style.backend_rank(backends[i]))]


def _enforcement(data: ReportData) -> Finding | None:
    """One line per kind of limit: who held it (grouped, with the common evidence), who did not (each)."""
    f = Finding("Enforcement")
    s = data.summary
    if s.empty:
        return None
    cpu = s[(s["measurement"] == "cpu_quota") & (s["metric"] == "cpu_ratio") & (s["n"] > 0)]
    if not cpu.empty:
        pcols = [c for c in cpu.columns if c.startswith("param_") and cpu[c].notna().any()]
        verdicts = [_cpu_verdict(str(series), g, s, pcols) for series, g in _rank(cpu).groupby("series", sort=False)]
        f.lines.append(_verdict_line(f"CPU quotas (median delivered / expected CPU per cell, within "
                                     f"±{CPU_TOLERANCE:.0%})", verdicts))
    f.lines += _limits(data)
    return f


def _cell_median(s: pd.DataFrame, row: Any, metric: str, pcols: list[str]) -> float:
    m = (s["series"] == row["series"]) & (s["measurement"] == row["measurement"]) & (s["metric"] == metric)
    for c in pcols:
        m &= s[c].isna() if style.is_missing(row[c]) else s[c] == row[c]
    hit = s[m]
    return float(hit["median"].iloc[0]) if not hit.empty else math.nan


def _cpu_verdict(series: str, cells: pd.DataFrame, s: pd.DataFrame, pcols: list[str]) -> tuple[str, bool | None, str]:
    """Over-delivery always fails; under-delivery fails only where the cgroup throttled the workload
    in most periods — otherwise the busy host, not the quota, held it back (``isobench validate``'s
    precondition), and the cell is not judged."""
    off, starved, failed = [], 0, 0
    for _, r in cells.iterrows():
        ratio = float(r["median"])
        if ratio < 1 - CPU_TOLERANCE:
            throttled = _cell_median(s, r, "nr_throttled", pcols) / _cell_median(s, r, "nr_periods", pcols)
            if math.isfinite(throttled) and throttled < THROTTLED_SHARE:
                starved += 1
                continue
        off.append(abs(ratio - 1))
        failed += abs(ratio - 1) > CPU_TOLERANCE
    judged = len(off)
    busy = f"{starved} cell{'s' if starved != 1 else ''} not judged: {NOT_JUDGED}" if starved else ""
    if not judged:
        return series, None, f"{starved} cell{'s' if starved != 1 else ''}"
    head = (f"within {max(off):.1%} in {judged} cell{'s' if judged != 1 else ''}" if not failed else
            f"{failed} of {judged} cells off by more than {CPU_TOLERANCE:.0%}, worst {max(off):.1%}")
    return series, not failed, head + (f"; {busy}" if busy else "")


def _verdict_line(what: str, verdicts: Sequence[tuple[str, bool | None, str]]) -> str:
    """``what: held by A (evidence), B (evidence); not held by C (evidence); not judged for D (why).``"""
    held = [f"{s} ({d})" for s, ok, d in verdicts if ok]
    failed = [f"{s} ({d})" for s, ok, d in verdicts if ok is False]
    unjudged = [f"{s} ({d})" for s, ok, d in verdicts if ok is None]
    parts = ([("held by every backend: " if not failed and not unjudged else "held by ") + ", ".join(held)]
             if held else [])
    parts += (["not held by " + ", ".join(failed)] if failed else []) + \
        (["not judged for " + ", ".join(unjudged) + f" — {NOT_JUDGED}"] if unjudged else [])
    return f"{what}: " + "; ".join(parts) + "."


def _limits(data: ReportData) -> list[str]:
    ok = _ok(data)
    out = []
    mem = ok[(ok["measurement"] == "mem_limit") & (ok["metric"] == "oom_killed")] if not ok.empty else ok
    if not mem.empty and {"param_mib", "param_limit_mib"} <= set(mem.columns):
        verdicts = []
        for (series, _, _), g in _series(mem):
            over = g[g["param_mib"] > g["param_limit_mib"]]
            under = g[g["param_mib"] <= g["param_limit_mib"]]
            held = bool((over["value"] >= 1).all() and (under["value"] < 1).all())
            verdicts.append((series, held, f"OOM-killed {int((over['value'] >= 1).sum())}/{len(over)} above, "
                                           f"{int((under['value'] >= 1).sum())}/{len(under)} below" + _note(g)))
        out.append(_verdict_line("Memory limits (OOM kill in every run above the limit, none below)", verdicts))
    pids = ok[(ok["measurement"] == "pids_limit") & (ok["metric"] == "pids_reached")] if not ok.empty else ok
    if not pids.empty and "param_limit" in pids.columns:
        verdicts = []
        for (series, _, _), g in _series(pids):
            over = g[g["value"] > g["param_limit"]]
            verdicts.append((series, over.empty, f"at most {style.fmt(g['value'].max())} of "
                                                 f"{style.fmt(g['param_limit'].min())}" + _note(g)))
        out.append(_verdict_line("Pids limits (processes reached, never above the limit)", verdicts))
    return out


def _note(g: pd.DataFrame) -> str:
    notes = [str(n) for n in g["note"].dropna().unique()] if "note" in g.columns else []
    return f"; {'; '.join(notes)}" if notes else ""


def _peers(data: ReportData) -> Finding | None:
    from harness.report import tables

    peers = tables.peer_ratios(data)
    if peers.empty:
        return None
    sel = peers[peers["metric"].isin(["launch_to_ready", "pss"])]
    # one workload per metric, the one the headline uses
    prefer = {m: w for m, (_, metric, wls, _) in [(v[1], v) for v in HEADLINE.values()] for w in wls[:1]}
    sel = sel[[w == prefer.get(m, w) or not (sel["metric"] == m).any() for m, w in zip(sel["metric"], sel["workload"],
                                                                                         strict=True)]]
    f = Finding("Peers: median ratio to our own runtime of the same kind")
    for _, r in sel.iterrows():
        e = Estimate(r["ratio"], r["ci_lo"], r["ci_hi"], int(min(r["n_peer"], r["n_ref"])),
                     "" if min(r["n_peer"], r["n_ref"]) >= MIN_N_CI else "too few samples")
        f.lines.append(f"{r['peer']}, {r['metric']} ({r['workload']}): {times(e, str(r['reference']))}"
                       + unresolved(e))
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
