"""The CPU section's per-period chart: CPU delivered in each CFS period against the quota line.

Reads the series ``harness.measure.cpu`` stored beside each run's logs
(``logs/cpu-periods.jsonl``: one line per sample, delivered ÷ quota for every
period of its window, phase-locked to the kernel's period boundaries).  One
panel per cell (period, quota, threads), first repetition, one step line per
backend; the dashed line is the quota.  Cells whose quota equals the demand
are marked: at a 10 ms period the kernel throttles them in about half the
periods (the baseline's reasoned exception), which this chart makes visible.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.measure.cpu import PERIODS_FILE
from harness.report import style
from harness.report.chartkit import Chart, figure, finish
from harness.report.model import ReportData
from harness.stats.series import label as series_label

#: at most this many periods per panel: enough to see the pattern, few enough to see each one
MAX_PERIODS = 100
COLUMNS = 4


@dataclass(frozen=True)
class Series:
    backend: str
    accel: str | None
    period_ms: float
    quota: float
    threads: int
    ratios: list[float]
    index: list[int]  # each ratio's period number from the window's start (gaps: periods not resolved)

    @property
    def cell(self) -> tuple[float, float, int]:
        return self.period_ms, self.quota, self.threads


def load_series(run_dirs: list[Path]) -> Iterator[Series]:
    """The first non-warm-up repetition of every (backend, cell) with a per-period series."""
    seen: set[tuple[Any, ...]] = set()
    for d in run_dirs:
        path = d / "logs" / PERIODS_FILE
        try:
            lines = path.read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            try:
                r: Mapping[str, Any] = json.loads(line)
                ratios = [float(x) for x in r["ratios"]]
                s = Series(str(r["backend"]), r.get("accel"), float(r["period_ms"]), float(r["quota"]),
                           int(r["params"].get("threads", 1)), ratios,
                           [int(k) for k in r.get("period", range(len(ratios)))])
            except (ValueError, KeyError, TypeError):
                continue  # a line cut by a kill, or an older format: skip it
            key = (s.backend, s.cell)
            if r.get("warmup") or key in seen or not s.ratios:
                continue
            seen.add(key)
            yield s


def _title(period_ms: float, quota: float, threads: int) -> str:
    where = "below" if quota < threads else "at" if math.isclose(quota, threads) else "above"
    return f"{period_ms:g} ms · quota {quota:g} · {threads} thr ({where} demand)"


def cpu_periods(data: ReportData, measurement: str) -> Chart | None:
    """The chart of ``measurement``'s per-period series (the file holds that measurement's only)."""
    series = list(load_series([r.path for r in data.runs]))
    if not series:
        return None
    cells = sorted({s.cell for s in series})
    rows = math.ceil(len(cells) / COLUMNS)
    cols = min(COLUMNS, len(cells))
    fig, axes = figure(rows, cols, size=(3.2 * cols, 2.4 * rows + 0.6))
    for ax in axes.flat[len(cells):]:
        ax.set_visible(False)
    findings = []
    for ax, cell in zip(axes.flat, cells, strict=False):
        period_ms, quota, threads = cell
        for s in sorted((s for s in series if s.cell == cell), key=lambda s: style.backend_rank(s.backend)):
            shown = [(k, r) for k, r in zip(s.index, s.ratios, strict=False) if k < MAX_PERIODS]
            label = series_label(s.backend, s.accel)
            ax.plot([k for k, _ in shown], [r * quota for _, r in shown], drawstyle="steps-mid", lw=0.9,
                    marker=".", ms=2, color=style.colour(s.backend), label=label)
        ax.axhline(quota, ls="--", lw=1.0, color="black", label="quota")
        ax.set_title(_title(*cell), fontsize=8)
        ax.set_ylim(bottom=0)
        ax.tick_params(labelsize=7)
        if math.isclose(quota, threads) and period_ms <= 10:
            ax.set_facecolor("#fff4e0")
            findings.append(_title(*cell))
    for ax in axes[:, 0]:
        ax.set_ylabel("CPUs delivered in the period", fontsize=7)
    for ax in axes[-1, :]:
        ax.set_xlabel("period # (first repetition)", fontsize=7)
    title = "CPU delivered per CFS period, against the quota"
    notes = ["shaded: quota equal to the demand at a short period, throttled by the kernel in up to about half "
             "the periods (a known behaviour, recorded as an exception in baselines/enforcement.toml)"] if findings else []
    finish(fig, title, data.footnote(notes))
    caption = ("Each step is one period of the kernel's CFS bandwidth timer (read just before each boundary, "
               f"first {MAX_PERIODS} periods of the first repetition); the dashed line is the quota. "
               "A single period's figure is quantised by the kernel's CPU-time accounting: a running task's "
               "usage advances at scheduler ticks (4 ms steps on the development host), so at a 10 ms period "
               "one period reads ±1 tick, and a period's quota can be overrun by up to a tick (repaid by "
               "throttling the next); the window's ratio and the throttle counts are exact. "
               "Distributions over every period (p1/p50/p99 of delivered ÷ quota) are in the table.")
    if findings:
        caption += " Finding: " + "; ".join(findings) + " — see the validate baseline's exception."
    return Chart("cpu_periods", title, caption, fig)
