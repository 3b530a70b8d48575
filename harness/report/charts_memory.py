"""Memory charts: what one idle instance costs, and what each additional one does."""

from __future__ import annotations

import textwrap
from typing import TYPE_CHECKING

import numpy as np

from harness.report import style
from harness.report.chartkit import (
    LOG_RATIO,
    PANEL_H,
    Chart,
    Styler,
    figure,
    finish,
    grouped_bars,
    ordered_series,
    summary_rows,
    summary_value,
    wants_log,
)
from harness.report.model import ReportData

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd


# -- memory ----------------------------------------------------------------------
def memory_overhead(data: ReportData, measurement: str) -> Chart | None:
    s = summary_rows(data, measurement)
    if s.empty:
        return None
    metrics = [m for m in ("pss_overhead", "uss_overhead") if m in set(s["metric"])]
    overhead = bool(metrics)
    metrics = metrics or [m for m in ("pss", "uss", "rss") if m in set(s["metric"])]
    if not metrics:
        return None
    s = s[s["metric"].isin(metrics)]
    series = ordered_series(s)
    fig, axes = figure(size=(7.0, PANEL_H))
    ax = axes[0, 0]
    value = summary_value(s)
    grouped_bars(ax, metrics, series, Styler(s["split"]), lambda n, m: value(n, s[s["metric"] == m]),
                 annotate=len(series) <= 6)
    ax.set_xticklabels([m.replace("_overhead", "").upper() + (" overhead" if overhead else "") for m in metrics])
    ylabel = "MiB per instance" + (" above bare" if overhead else "")
    if wants_log(s["median"].astype(float).abs()):
        ax.set_yscale("symlog", linthresh=1.0)
        ylabel += " (symlog)"
    # a median below n=6 has no interval (nan): the median bounds the axis instead
    bottom = min(0.0, float(s[["ci_lo", "median"]].min().min()) * 1.3)
    top = float(s[["ci_hi", "median"]].max().max()) * 1.6
    if top > bottom:  # all zero (a toy backend, bare's overhead alone): matplotlib's default axis
        ax.set_ylim(bottom=bottom, top=top)
    ax.set_ylabel(ylabel)
    ax.axhline(0, color="#333333", linewidth=0.6)
    ax.grid(axis="x", visible=False)
    title = "Memory overhead per idle instance" if overhead else "Memory per idle instance"
    finish(fig, title, data.footnote())
    return Chart("memory_overhead", title,
                 "Median host memory of one idle instance (summed over its host processes"
                 + (", minus the same workload run bare" if overhead else "") + ") with 95 % CI.", fig)


def _stored_fit(rows: pd.DataFrame, base: float) -> tuple[float, float, str] | None:
    """(slope, offset, label) of "MiB used vs instances": Theil–Sen over every stored ramp pooled
    (``harness.measure.density.pooled_fit``), its line through ``base``; None without two points."""
    from harness.measure.density import pooled_fit

    pts = rows[rows["metric"] == "mem_available"].dropna(subset=["param_instances"])
    ramps = [g.sort_values("param_instances")["value"].astype(float).tolist()
             for _, g in pts.groupby("repetition")]
    ramps = [r for r in ramps if len(r) >= 2]
    if not ramps:
        return None
    fit = pooled_fit(ramps)
    what = (f"{style.fmt(fit.slope)} MiB/instance [{style.fmt(fit.lo)}–{style.fmt(fit.hi)}]" if fit.resolved
            else f"not resolved: [{style.fmt(fit.lo)}–{style.fmt(fit.hi)}] MiB/instance")
    return fit.slope, fit.intercept, what


def density(data: ReportData, measurement: str) -> Chart | None:
    """MemAvailable drop vs instances with the fitted line; a zoomed panel when one backend dwarfs others."""
    rows = data.of(measurement)
    df = rows[rows["metric"] == "mem_available"] if not rows.empty else rows
    if df.empty or "param_instances" not in df.columns:
        return None
    df = df.dropna(subset=["param_instances"])
    if df.empty:
        return None
    lines = []  # (name, backend, split, k, used, fit or None)
    for name, backend, split in ordered_series(df):
        s = df[df["series"] == name]
        k = s["param_instances"].astype(float).to_numpy()
        base = float(s.loc[s["param_instances"] == k.min(), "value"].median())
        used = base - s["value"].astype(float).to_numpy()  # consumed since the fewest instances
        lines.append((name, backend, split, k, used, _stored_fit(rows[rows["series"] == name], base)))
    slopes = [abs(f[0]) for *_, f in lines if f is not None]
    big = max(slopes, default=0.0)
    small = [ln for ln in lines if ln[5] is not None and big > 0 and abs(ln[5][0]) < big / LOG_RATIO]
    zoomed = ", ".join(dict.fromkeys(ln[1] for ln in small))
    panels = [("all backends", lines)] + ([(f"zoom: {zoomed}", small)] if small else [])
    fig, axes = figure(1, len(panels), size=(7.0, PANEL_H + 0.2))
    styler = Styler(df["split"])
    for ax, (ptitle, group) in zip(axes.flat, panels, strict=True):
        for name, backend, split, k, used, fit in group:
            st = styler(backend, split)
            ax.scatter(k, used, s=12, color=st["color"], marker=st["marker"], alpha=0.45, linewidths=0)
            label = name if fit is None else f"{name}: {fit[2]}"
            if fit is not None:
                xs = np.array([k.min(), k.max()])
                ax.plot(xs, fit[0] * xs + fit[1], color=st["color"], linestyle=st["linestyle"], linewidth=1.6,
                        label=label)
            else:
                ax.plot([], [], color=st["color"], label=label)
        ax.set_xlabel("idle instances running (count)")
        ax.xaxis.get_major_locator().set_params(integer=True)
        if len(panels) > 1:
            ax.set_title(textwrap.shorten(ptitle, 45), fontsize=9)
    axes[0, 0].set_ylabel("host memory used (MiB)")
    title = "Density: host memory per additional instance"
    finish(fig, title, data.footnote(), ncol=2)
    return Chart(measurement, title, "Drop of MemAvailable as idle instances accumulate, with the Theil–Sen line of "
                 "every ramp pooled (slope = marginal MiB per instance, 95 % interval in the legend; "
                 "\"not resolved\" when the interval is wider than the slope).", fig)
