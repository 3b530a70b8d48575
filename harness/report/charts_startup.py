"""Startup charts: the distribution of launch → ready, and where the time goes."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from harness.report import style
from harness.report.chartkit import (
    PANEL_H,
    Chart,
    Styler,
    figure,
    finish,
    ordered_series,
    wants_log,
)
from harness.report.model import ReportData

if TYPE_CHECKING:  # pragma: no cover
    pass


# -- startup ---------------------------------------------------------------------
def startup_latency(data: ReportData, measurement: str) -> Chart | None:
    """ECDF of launch→ready per backend, one panel per workload; a dot marks each median."""
    df = data.of(measurement)
    df = df[df["metric"] == "launch_to_ready"] if not df.empty else df
    if df.empty:
        return None
    workloads = sorted(df["workload"].unique())
    ncols = min(2, len(workloads))
    nrows = math.ceil(len(workloads) / ncols)
    fig, axes = figure(nrows, ncols, size=(7.0, PANEL_H * nrows + 0.4), sharey=True)
    styler = Styler(df["split"])
    log = wants_log(df["value"])
    for ax, wl in zip(axes.flat, workloads, strict=False):
        sub = df[df["workload"] == wl]
        for name, backend, split in ordered_series(sub):
            v = np.sort(sub.loc[sub["series"] == name, "value"].astype(float).to_numpy())
            st = styler(backend, split)
            y = np.arange(1, v.size + 1) / v.size
            ax.step(np.r_[v[0], v], np.r_[0, y], where="post", color=st["color"], linestyle=st["linestyle"],
                    linewidth=1.6, label=name)
            ax.plot([np.median(v)], [0.5], marker=st["marker"], color=st["color"], markersize=4.5,
                    linestyle="none")
        if log:
            ax.set_xscale("log")
        ax.set_title(f"workload {wl}")
        ax.set_xlabel("launch → ready (ms" + (", log scale)" if log else ")"))
        ax.set_ylim(0, 1.02)
    for ax in axes.flat[len(workloads):]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel("fraction of launches")
    title = "Startup latency: launch → ready"
    finish(fig, title, data.footnote())
    return Chart("startup_latency", title, "Empirical CDF of launch→ready per backend (a dot marks the median); "
                 "further right is slower.", fig)


def startup_phases(data: ReportData, measurement: str) -> Chart | None:
    """Stacked bars: each phase's median as a share of the startup, total written at the end."""
    df = data.of(measurement, ["workload", "series", "backend", "split", "metric", "value"])
    if df.empty:
        return None
    phases_df = df[df["metric"].str.startswith("phase_")]
    if phases_df.empty:
        return None
    all_phases = list(dict.fromkeys(phases_df["metric"]))  # colour index: order of first appearance
    colours = _phase_colours(len(all_phases))
    several = phases_df["workload"].nunique() > 1
    bars = []  # (label, [(phase, median ms)] in the series' own order, median launch→ready)
    for wl in sorted(phases_df["workload"].unique()):
        sub = df[df["workload"] == wl]
        for name, _, _ in ordered_series(phases_df[phases_df["workload"] == wl]):
            s = sub[sub["series"] == name]
            meds = s.groupby("metric")["value"].median()
            own = [m for m in dict.fromkeys(s["metric"]) if m.startswith("phase_")]  # as the backend ran them
            bars.append((f"{name} · {wl}" if several else name, [(p, float(meds[p])) for p in own],
                         float(meds.get("launch_to_ready", np.nan))))
    fig, axes = figure(size=(7.0, max(1.6, 0.36 * len(bars) + 0.8)))
    ax = axes[0, 0]
    for i, (_, phases, total) in enumerate(reversed(bars)):
        summed = sum(v for _, v in phases)
        whole = max(summed, total if np.isfinite(total) else 0) or 1.0
        left = 0.0
        for p, v in phases:
            w = 100 * v / whole
            ax.barh(i, w, left=left, color=colours[all_phases.index(p)], edgecolor="white", linewidth=0.5,
                    label=p.removeprefix("phase_"))
            left += w
        if np.isfinite(total) and total > summed:
            ax.barh(i, 100 - left, left=left, color="#dddddd", edgecolor="white", linewidth=0.5,
                    label="not in a phase")
        shown = total if np.isfinite(total) else summed
        ax.text(101, i, f"{style.fmt(shown)} ms", va="center", fontsize=7.5)
    ax.set_yticks(range(len(bars)))
    ax.set_yticklabels([b[0] for b in reversed(bars)])
    ax.set_xlim(0, 118)
    ax.set_xticks(range(0, 101, 20))
    ax.set_xlabel("share of launch → ready, medians per phase (%)")
    ax.grid(axis="y", visible=False)
    title = "Where startup time goes (phases)"
    finish(fig, title, data.footnote(), ncol=5)
    return Chart("startup_phases", title,
                 "Median of each phase as a share of launch→ready, in the order the backend runs them; "
                 "the number is the median launch→ready.", fig)


def _phase_colours(n: int) -> list[str]:
    """Muted hues (Set2 without its grey, then Dark2), unlike the saturated backend palette."""
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    hues = [to_hex(colormaps["Set2"](i)) for i in range(7)] + [to_hex(colormaps["Dark2"](i)) for i in range(7)]
    return [hues[i % len(hues)] for i in range(n)]
