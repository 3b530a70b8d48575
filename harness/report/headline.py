"""The headline chart: each backend's startup, memory and enforcement as ratios to bare metal.

One panel per measurement that declares a headline figure, a log axis (a container is ~10× bare, a guest ~1000×),
a dot per backend at the ratio of medians with its 95 % interval as a
whisker; a hollow dot without a whisker where the interval is not resolved
(too few samples), labelled with its n.  The numbers come from
``findings.rows`` — the same ones the findings state.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

import runtimes
from harness.measure import catalogue
from harness.report import chartkit as charts
from harness.report import findings, style
from harness.report.model import ReportData
from harness.stats.numbers import PROSE, fmt

CAPTION = ("Read this first: each backend's startup latency, host memory of an idle instance and CPU quota "
           "accuracy as a multiple of {ref}'s — a ratio of medians with its 95 % interval "
           "(log scale; hollow: too few samples for an interval).")


def panels() -> dict[str, str]:
    """measurement -> its panel's title, in declaration order (``MeasurementInfo.headline``)."""
    return {m: h.panel for m, h in catalogue().headlines()}


def chart(data: ReportData, *, row: bool = False, size: tuple[float, float] | None = None,
          name: str = "headline") -> charts.Chart | None:
    """The chart, panels stacked (``row=False``, beside the findings) or side by side (a slide)."""
    head = [h for h in findings.rows(data) if h.ratio is not None]
    ref = findings.reference_backend(data)
    if not head or ref is None:
        return None
    titles = panels()
    families = [f for f in titles if any(h.family == f for h in head)]
    series = sorted({(h.series, h.backend, str(h.split)) for h in head},
                    key=lambda t: (style.backend_rank(t[1]), t[2]), reverse=True)
    labels = [s for s, _, _ in series]
    panel_h = 0.32 * len(labels) + 0.75
    if size is None:
        size = (11.0, panel_h + 0.5) if row else (5.6, panel_h * len(families) + 0.3)
    fig, axes = charts.figure(1 if row else len(families), len(families) if row else 1, size=size, sharey=True)
    for ax, family in zip(axes.flat, families, strict=True):
        panel(ax, titles[family], [h for h in head if h.family == family], labels, ref)
    title = f"Each backend relative to {ref} (ratio of medians, 95 % CI)"
    charts.finish(fig, title, data.footnote(), legend=False)
    return charts.Chart(name, title, CAPTION.format(ref=runtimes.declaration(ref).words), fig)


def panel(ax: Any, title: str, rows: list[findings.HeadlineRow], labels: list[str], ref: str) -> None:
    lo_all, hi_all = [1.0], [1.0]
    for h in rows:
        y = labels.index(h.series)
        r = h.ratio
        assert r is not None
        colour = style.colour(h.backend)
        if r.resolved:
            ax.errorbar([r.value], [y], xerr=[[max(r.value - r.lo, 0)], [max(r.hi - r.value, 0)]], fmt="o",
                        color=colour, markersize=6, capsize=3, elinewidth=1.4)
            lo_all.append(r.lo)
            hi_all.append(r.hi)
            text = f"{fmt(r.value, PROSE)}×"
        else:
            ax.plot([r.value], [y], "o", markerfacecolor="white", markeredgecolor=colour, markersize=6, mew=1.5)
            text = f"≈{fmt(r.value, PROSE)}× (n={r.n})"
        if math.isfinite(r.value) and r.value > 0:
            lo_all.append(r.value)
            hi_all.append(r.value)
            ax.annotate(text, (r.value, y), textcoords="offset points", xytext=(0, 7), ha="center",
                        fontsize=7.5, color="#222222")
    ax.axvline(1.0, color="#888888", linestyle="--", linewidth=1)
    ax.set_xscale("log")
    lo, hi = min(v for v in lo_all if v > 0), max(hi_all)
    span = max(math.log10(hi / lo), 0.04)  # a panel whose ratios all sit near 1 still gets a readable axis
    pad = 0.18 * span
    ax.set_xlim(10 ** (math.log10(lo) - pad), 10 ** (math.log10(hi) + pad))
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

    if span < 0.3:  # a narrow log axis: a few plain ticks (a decade locator would leave none)
        ax.xaxis.set_major_locator(MaxNLocator(5))
    else:
        ax.xaxis.set_major_locator(LogLocator(base=10))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}×" if v >= 10 else f"{v:.3g}×"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_yticks(np.arange(len(labels)))
    ax.set_yticklabels(labels)
    ax.set_ylim(-0.6, len(labels) - 0.4)
    ax.set_title(title, fontsize=9.5, loc="left")
    ax.set_xlabel(f"times {ref} (log scale)")
    ax.grid(axis="y", visible=False)
