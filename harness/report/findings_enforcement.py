"""The "Enforcement" finding: one line per kind of limit — who held it (grouped, with the common
evidence), who did not (each).  A line per measurement (CPU quota, memory limit, pids limit), each
named in its declaration's ``findings``; ``findings.findings`` merges them under one title."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from harness.report import style
from harness.report.findings import Finding, by_series, ok_rows, rank
from harness.report.model import ReportData

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

TITLE = "Enforcement"
#: a CPU quota cell counts as delivered when its median is this close to the expected CPU
CPU_TOLERANCE = 0.05
#: below this share of throttled periods a CPU under-delivery is the busy host's doing, not the quota's
THROTTLED_SHARE = 0.8
NOT_JUDGED = f"the busy host kept the workload below its quota (throttled in < {THROTTLED_SHARE:.0%} of periods)"


def cpu_quota(data: ReportData, measurement: str) -> Finding | None:
    """CPU quotas: the median delivered / expected CPU per cell, each backend judged over its cells."""
    s = data.summary
    if s.empty:
        return None
    cpu = s[(s["measurement"] == measurement) & (s["metric"] == "cpu_ratio") & (s["n"] > 0)]
    if cpu.empty:
        return None
    pcols = [c for c in cpu.columns if c.startswith("param_") and cpu[c].notna().any()]
    verdicts = [_cpu_verdict(str(series), g, s, pcols) for series, g in rank(cpu).groupby("series", sort=False)]
    return Finding(TITLE, [_verdict_line(f"CPU quotas (median delivered / expected CPU per cell, within "
                                         f"±{CPU_TOLERANCE:.0%})", verdicts)])


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


def _rows(data: ReportData, measurement: str, metric: str) -> pd.DataFrame:
    """The ok rows of ``metric``; none when the run has no summary (nothing was measured)."""
    ok = ok_rows(data)
    if data.summary.empty or ok.empty:
        return ok.iloc[0:0]
    return ok[(ok["measurement"] == measurement) & (ok["metric"] == metric)]


def mem_limit(data: ReportData, measurement: str) -> Finding | None:
    """Memory limits: an OOM kill in every run above the limit, none below."""
    mem = _rows(data, measurement, "oom_killed")
    if mem.empty or not {"param_mib", "param_limit_mib"} <= set(mem.columns):
        return None
    verdicts = []
    for (series, _, _), g in by_series(mem):
        over = g[g["param_mib"] > g["param_limit_mib"]]
        under = g[g["param_mib"] <= g["param_limit_mib"]]
        held = bool((over["value"] >= 1).all() and (under["value"] < 1).all())
        verdicts.append((series, held, f"OOM-killed {int((over['value'] >= 1).sum())}/{len(over)} above, "
                                       f"{int((under['value'] >= 1).sum())}/{len(under)} below" + _note(g)))
    return Finding(TITLE, [_verdict_line("Memory limits (OOM kill in every run above the limit, none below)",
                                         verdicts)])


def pids_limit(data: ReportData, measurement: str) -> Finding | None:
    """Pids limits: the processes reached, never above the limit."""
    pids = _rows(data, measurement, "pids_reached")
    if pids.empty or "param_limit" not in pids.columns:
        return None
    verdicts = []
    for (series, _, _), g in by_series(pids):
        over = g[g["value"] > g["param_limit"]]
        verdicts.append((series, over.empty, f"at most {style.fmt(g['value'].max())} of "
                                             f"{style.fmt(g['param_limit'].min())}" + _note(g)))
    return Finding(TITLE, [_verdict_line("Pids limits (processes reached, never above the limit)", verdicts)])


def _note(g: pd.DataFrame) -> str:
    notes = [str(n) for n in g["note"].dropna().unique()] if "note" in g.columns else []
    return f"; {'; '.join(notes)}" if notes else ""
