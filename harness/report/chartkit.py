"""The plumbing every chart shares: figures, titles and footnotes, styles per backend and host.

Every chart: a title, units on every axis, the backend's fixed colour
(``style.colour``, declared by each backend), a line style/marker per host when several hosts are
compared, and a footnote naming host, kernel, cgroup version and accelerator
("emulated (TCG)" where a VM ran without KVM).  A chart whose data is absent
returns None and the report says so instead.

Figures are built with ``matplotlib.figure.Figure`` directly (no pyplot): no
global state, no GUI backend, the Agg canvas renders PNG and SVG.  The charts
themselves live in ``charts_startup``, ``charts_memory``, ``charts_enforcement``
and ``charts_periods``, each a function ``(ReportData, measurement) -> Chart | None``
that a measurement's declaration names (``MeasurementInfo.charts``).
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.report import style
from harness.report.model import ReportData

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: ranges wider than this ratio are drawn on a log axis
LOG_RATIO = 30.0


@dataclass
class Chart:
    name: str  # file stem under charts/
    title: str
    caption: str
    fig: Figure


# -- plumbing ----------------------------------------------------------------
def figure(nrows: int = 1, ncols: int = 1, size: tuple[float, float] = style.FIGSIZE,
           **kw: Any) -> tuple[Figure, np.ndarray]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=size)
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    return fig, axes


def finish(fig: Figure, title: str, footnote: str, *, legend: bool = True, ncol: int = 3) -> None:
    """Title, one legend for all panels below them, the footnote at the bottom, tight layout.

    The figure grows by the height of the legend and footnote, so the plotting
    area keeps its size however many series there are.
    """
    lines = []
    width = int(fig.get_figwidth() * 19)  # characters of 6.5 pt text that fit across the figure
    for line in footnote.splitlines():
        lines += textwrap.wrap(line, width) or [""]
    foot_h = 0.12 * len(lines) + 0.1
    handles: dict[str, Any] = {}
    if legend:
        for ax in fig.axes:
            if ax.get_visible():
                for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
                    if not lab.startswith("_"):
                        handles.setdefault(lab, h)
    ncol = max(1, min(ncol, len(handles)))
    leg_h = (0.16 * math.ceil(len(handles) / ncol) + 0.1) if handles else 0.0
    height = fig.get_figheight() + foot_h + leg_h
    fig.set_figheight(height)
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=ncol, frameon=False,
                   bbox_to_anchor=(0.5, foot_h / height), fontsize=7.5)
    fig.suptitle(title, fontweight="bold")
    fig.tight_layout(rect=(0, (foot_h + leg_h) / height, 1, 1))
    fig.text(0.01, 0.01, "\n".join(lines), fontsize=6.5, color="#555555", ha="left", va="bottom")


def save(chart: Chart, out_dir: Any) -> list[str]:
    """Write ``<name>.png`` and ``<name>.svg``; returns the file names."""
    names = []
    for ext in ("png", "svg"):
        path = out_dir / f"{chart.name}.{ext}"
        chart.fig.savefig(path, format=ext, dpi=style.DPI, metadata={"Date": None} if ext == "svg" else None)
        names.append(path.name)
    return names


class Styler:
    """Colour from the backend, line style / marker / hatch from the host (or kernel) split."""

    def __init__(self, splits: Iterable[Any]):
        self.splits = sorted({str(s) for s in splits if not style.is_missing(s)})

    def __call__(self, backend: str, split: Any = None) -> dict[str, Any]:
        i = self.splits.index(str(split)) if not style.is_missing(split) and str(split) in self.splits else 0
        return {"color": style.colour(backend), "linestyle": style.LINESTYLES[i % len(style.LINESTYLES)],
                "marker": style.MARKERS[i % len(style.MARKERS)], "hatch": style.HATCHES[i % len(style.HATCHES)]}


def summary_rows(data: ReportData, measurement: str, metric: str | None = None) -> pd.DataFrame:
    """The summary rows of ``measurement`` (and ``metric``) that have samples; a copy, so a
    chart may add columns (``param_cells``)."""
    s = data.summary
    if s.empty:
        return s
    keep = (s["measurement"] == measurement) & (s["n"] > 0)
    if metric is not None:
        keep &= s["metric"] == metric
    return s[keep].copy()


def ordered_series(df: pd.DataFrame) -> list[tuple[str, str, Any]]:
    """(series, backend, split) in display order: by backend (the registry's order), then split."""
    seen: dict[str, tuple[str, Any]] = {}
    firsts = df[["series", "backend", "split"]].drop_duplicates("series")  # each series' first row, in order
    for s, b, sp in zip(firsts["series"], firsts["backend"], firsts["split"], strict=True):
        seen.setdefault(s, (str(b), sp))
    return sorted(((s, b, sp) for s, (b, sp) in seen.items()),
                  key=lambda t: (style.backend_rank(t[1]), str(t[2])))


def wants_log(values: Iterable[float]) -> bool:
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=float)
    v = v[v > 0]
    return v.size > 1 and v.max() / v.min() > LOG_RATIO


def notes_of(df: pd.DataFrame) -> list[str]:
    """The rows' enforcement notes, one line per backend, for a footnote."""
    if df.empty or "note" not in df.columns:
        return []
    out = []
    for (b, n), _ in df.dropna(subset=["note"]).groupby(["backend", "note"]):
        out.append(f"{b}: {n}")
    return ["notes: " + "; ".join(out)] if out else []


def param_cells(df: pd.DataFrame, keys: Sequence[str]) -> list[tuple[Any, ...]]:
    cols = [f"param_{k}" for k in keys]
    for c in cols:
        if c not in df.columns:
            df[c] = np.nan
    cells = {tuple(r) for r in df[cols].itertuples(index=False, name=None)}
    return sorted(cells, key=lambda t: tuple(-1 if style.is_missing(x) else float(x) for x in t))


def cell_match(df: pd.DataFrame, keys: Sequence[str], cell: Sequence[Any]) -> pd.DataFrame:
    m = np.ones(len(df), dtype=bool)
    for k, v in zip(keys, cell, strict=True):
        col = df[f"param_{k}"]
        m &= col.isna().to_numpy() if style.is_missing(v) else (col == v).to_numpy()
    return df[m]


def grouped_bars(ax: Axes, cells: Sequence[Any], series: Sequence[tuple[str, str, Any]], styler: Styler,
                 value: Callable[[str, Any], tuple[float, float, float] | None],
                 annotate: bool = True) -> dict[tuple[str, Any], float]:
    """Bars of (median, ci_lo, ci_hi) per cell (x group) and series; returns each bar's x."""
    width = 0.8 / max(len(series), 1)
    xs: dict[tuple[str, Any], float] = {}
    for j, (name, backend, split) in enumerate(series):
        st = styler(backend, split)
        for i, cell in enumerate(cells):
            v = value(name, cell)
            if v is None or style.is_missing(v[0]):
                continue
            x = i - 0.4 + width * (j + 0.5)
            xs[(name, cell)] = x
            med, lo, hi = v
            yerr = None
            if not (style.is_missing(lo) or style.is_missing(hi)):
                yerr = [[max(med - lo, 0)], [max(hi - med, 0)]]
            ax.bar(x, med, width * 0.92, color=st["color"], hatch=st["hatch"], edgecolor="white",
                   yerr=yerr, capsize=2, error_kw={"elinewidth": 0.8, "ecolor": "#222222"},
                   label=name)  # finish() merges the duplicates into one legend entry
            if annotate:
                ax.annotate(style.fmt(med), (x, med), textcoords="offset points", xytext=(0, 2),
                            ha="center", va="bottom", fontsize=6.5)
    ax.set_xticks(range(len(cells)))
    return xs


def summary_value(summary: pd.DataFrame) -> Callable[..., tuple[float, float, float] | None]:
    def value(series: str, frame: pd.DataFrame) -> tuple[float, float, float] | None:
        r = frame[frame["series"] == series]
        if r.empty or r["n"].iloc[0] == 0:
            return None
        return float(r["median"].iloc[0]), float(r["ci_lo"].iloc[0]), float(r["ci_hi"].iloc[0])
    return value



#: height (inches) of one row of panels; finish() adds legend and footnote below
PANEL_H = 3.0
