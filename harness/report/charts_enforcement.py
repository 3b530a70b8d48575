"""Enforcement charts: CPU quota delivered vs. asked, memory and pids limits."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.report import style
from harness.report.chartkit import (
    PANEL_H,
    Chart,
    Styler,
    cell_match,
    figure,
    finish,
    grouped_bars,
    notes_of,
    ordered_series,
    param_cells,
    summary_rows,
    summary_value,
)
from harness.report.model import ReportData

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


# -- enforcement --------------------------------------------------------------------
def cpu_quota(data: ReportData, measurement: str) -> Chart | None:
    s = summary_rows(data, measurement)
    if s.empty or "param_quota" not in s.columns:
        return None
    for col in ("param_threads", "param_period_ms"):
        if col not in s.columns:
            s[col] = np.nan
    delivered = s[s["metric"] == "cpu_delivered"]
    if delivered.empty:
        return None
    expected = s[s["metric"] == "cpu_expected"]
    threads = sorted(delivered["param_threads"].unique(), key=lambda t: -1 if style.is_missing(t) else t)
    ncols = min(3, len(threads))
    nrows = math.ceil(len(threads) / ncols)
    fig, axes = figure(nrows, ncols, size=(7.0, PANEL_H * nrows + 0.4), sharey=True)
    styler = Styler(delivered["split"])
    periods = sorted({p for p in delivered["param_period_ms"] if not style.is_missing(p)})
    top = float(max(delivered[["ci_hi", "median"]].max().max(), delivered["param_quota"].max())) * 1.08
    for ax, t in zip(axes.flat, threads, strict=False):
        sub = cell_match(delivered, ["threads"], [t])
        qmax = float(sub["param_quota"].max()) * 1.05
        ax.plot([0, qmax], [0, qmax], color="#999999", linestyle="--", linewidth=1, label="requested (ideal)")
        exp = cell_match(expected, ["threads"], [t]).groupby("param_quota")["median"].median()
        if not exp.empty and not np.allclose(exp.to_numpy(), exp.index.to_numpy(dtype=float)):
            ax.plot(exp.index.to_numpy(dtype=float), exp.to_numpy(), color="#333333", linestyle=":",
                    linewidth=1.4, zorder=5, label="expected (capped by threads/cores)")
        series = ordered_series(sub)
        for j, (name, backend, split) in enumerate(series):
            st = styler(backend, split)
            for pi, per in enumerate(periods or [np.nan]):
                r = sub[sub["series"] == name]
                r = r if style.is_missing(per) else r[r["param_period_ms"] == per]
                if r.empty:
                    continue
                r = r.sort_values("param_quota")
                # a small sideways nudge keeps overlapping backends readable
                x = r["param_quota"].astype(float).to_numpy() * (1 + 0.02 * (j - (len(series) - 1) / 2))
                y = r["median"].astype(float).to_numpy()
                err = [np.nan_to_num(np.maximum(y - r["ci_lo"].to_numpy(dtype=float), 0)),  # nan: no interval
                       np.nan_to_num(np.maximum(r["ci_hi"].to_numpy(dtype=float) - y, 0))]
                marker = style.MARKERS[pi % len(style.MARKERS)] if len(periods) > 1 else st["marker"]
                lab = name + (f", period {style.fmt_param(per)} ms" if len(periods) > 1 else "")
                ax.errorbar(x, y, yerr=err, color=st["color"], linestyle=st["linestyle"], marker=marker,
                            markersize=4.5, linewidth=1.1, capsize=2, label=lab)
        head = "" if style.is_missing(t) else f"{style.fmt_param(t)} busy thread{'s' if t != 1 else ''}"
        if len(periods) == 1:
            head += f", period {style.fmt_param(periods[0])} ms"
        ax.set_title(head.strip(", "), fontsize=9.5)
        ax.set_xlabel("requested quota (CPUs)")
        ax.set_xlim(0, None)
        ax.set_ylim(0, top)
    for ax in axes.flat[len(threads):]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel("delivered (CPUs)")
    title = "CPU quota: delivered vs. requested"
    finish(fig, title, data.footnote(notes_of(data.of(measurement))))
    return Chart(measurement, title, "Median CPUs delivered (95 % CI) against the quota asked for; "
                 "the dashed diagonal is perfect enforcement.", fig)


def cpu_ratio(data: ReportData, measurement: str) -> Chart | None:
    s = summary_rows(data, measurement, "cpu_ratio")
    if s.empty:
        return None
    keys = ["threads", "period_ms", "quota"]
    cells = param_cells(s, keys)
    series = ordered_series(s)
    fig, axes = figure(size=(7.0, PANEL_H + 0.3))
    ax = axes[0, 0]
    styler = Styler(s["split"])
    ax.axhspan(0.95, 1.05, color="#2ca02c", alpha=0.08, label="±5 %")
    ax.axhline(1.0, color="#999999", linestyle="--", linewidth=1)
    width = 0.7 / max(len(series), 1)
    for j, (name, backend, split) in enumerate(series):
        st = styler(backend, split)
        for i, cell in enumerate(cells):
            r = cell_match(s[s["series"] == name], keys, cell)
            if r.empty:
                continue
            y, lo, hi = (float(r[c].iloc[0]) for c in ("median", "ci_lo", "ci_hi"))
            yerr = None if math.isnan(lo) or math.isnan(hi) else [[max(y - lo, 0)], [max(hi - y, 0)]]
            ax.errorbar(i - 0.35 + width * (j + 0.5), y, yerr=yerr,
                        color=st["color"], marker=st["marker"], markersize=5, capsize=2, linestyle="none",
                        label=name)
    ax.set_xticks(range(len(cells)))
    ax.set_xticklabels([_cell_label(c, ("t", "p", "q")) for c in cells], fontsize=7)
    return case_chart(data, measurement, fig, ax, "cpu_ratio", "CPU quota accuracy",
                      "Median ratio of delivered to expected CPU (95 % CI); 1 is exact, the band is ±5 %.",
                      xlabel="case (t = busy threads, p = period ms, q = quota CPUs)",
                      ylabel="delivered / expected (ratio)")


def case_chart(data: ReportData, measurement: str, fig: Figure, ax: Axes, name: str, title: str, caption: str, *,
               ylabel: str, xlabel: str = "case") -> Chart:
    """The common end of an enforcement chart with one group per grid case: axis labels, no
    vertical grid lines, and the backends' enforcement notes in the footnote."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(axis="x", visible=False)
    finish(fig, title, data.footnote(notes_of(data.of(measurement))))
    return Chart(name, title, caption, fig)


def _cell_label(cell: Sequence[Any], short: Sequence[str]) -> str:
    return "\n".join(f"{a} {style.fmt_param(v)}" for a, v in zip(short, cell, strict=True)
                     if not style.is_missing(v))


def mem_limit(data: ReportData, measurement: str) -> Chart | None:
    s = summary_rows(data, measurement)
    if s.empty or "param_limit_mib" not in s.columns:
        return None
    keys = ["limit_mib", "mib"]
    cells = param_cells(s, keys)
    peak = s[s["metric"] == "mem_peak"]
    oom = s[s["metric"] == "oom_killed"]
    series = ordered_series(s)
    fig, axes = figure(size=(7.0, PANEL_H))
    ax = axes[0, 0]
    value = summary_value(peak)
    xs = grouped_bars(ax, cells, series, Styler(s["split"]), lambda n, c: value(n, cell_match(peak, keys, c)),
                      annotate=False)
    for i, (limit, _) in enumerate(cells):
        if not style.is_missing(limit):
            ax.hlines(float(limit), i - 0.45, i + 0.45, color="black", linewidth=1.5, label="limit")
    heights = [float(x) for x in peak["ci_hi"].dropna()] + [float(c[0]) for c in cells if not style.is_missing(c[0])]
    for name, _, _ in series:
        for i, cell in enumerate(cells):
            r = cell_match(oom[oom["series"] == name], keys, cell)
            if r.empty or float(r["mean"].iloc[0]) <= 0:
                continue
            frac, n = float(r["mean"].iloc[0]), int(r["n"].iloc[0])
            p = cell_match(peak[peak["series"] == name], keys, cell)
            y = float(p["median"].max()) if not p.empty else float(cell[0])
            text = "OOM" if frac >= 1 else f"OOM {round(frac * n)}/{n}"
            ax.annotate(text, (xs.get((name, cell), i), y), textcoords="offset points", xytext=(0, 7),
                        ha="center", fontsize=6.5, color="#b00000", fontweight="bold")
    ax.set_ylim(0, max(heights, default=1.0) * 1.2)
    ax.set_xticklabels([f"{style.fmt_param(m)} MiB into\na {style.fmt_param(lim)} MiB limit" for lim, m in cells],
                       fontsize=7.5)
    return case_chart(data, measurement, fig, ax, measurement, "Memory limit: peak usage and OOM kills",
                      "Median peak memory per case (95 % CI); the black line is the limit; 'OOM' marks cases "
                      "whose workload was OOM-killed (k/n when only some repetitions were).",
                      ylabel="peak memory (MiB)")


def pids_limit(data: ReportData, measurement: str) -> Chart | None:
    s = summary_rows(data, measurement, "pids_reached")
    if s.empty or "param_limit" not in s.columns:
        return None
    keys = ["limit", "count"]
    cells = param_cells(s, keys)
    series = ordered_series(s)
    fig, axes = figure(size=(7.0, PANEL_H))
    ax = axes[0, 0]
    value = summary_value(s)
    grouped_bars(ax, cells, series, Styler(s["split"]), lambda n, c: value(n, cell_match(s, keys, c)),
                 annotate=len(series) <= 6)
    tops = [float(x) for x in s["ci_hi"].dropna()]
    for i, (limit, count) in enumerate(cells):
        if not style.is_missing(count):
            ax.hlines(float(count) + 1, i - 0.45, i + 0.45, color="#888888", linewidth=1.2, linestyle="--",
                      label="asked for (count + the shell)")
            tops.append(float(count) + 1)
        if not style.is_missing(limit):
            ax.hlines(float(limit), i - 0.45, i + 0.45, color="black", linewidth=1.5, label="limit")
    ax.set_ylim(0, max(tops, default=1.0) * 1.12)
    ax.set_xticklabels([f"{style.fmt_param(c)} forks,\nlimit {style.fmt_param(lim)}" for lim, c in cells],
                       fontsize=7.5)
    return case_chart(data, measurement, fig, ax, measurement, "Pids limit: processes reached",
                      "Median processes the workload reached per case; the black line is the limit, "
                      "the dashed line what it tried to reach.",
                      ylabel="processes reached (count)")
