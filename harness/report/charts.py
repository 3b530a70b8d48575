"""The charts of a report, one function each: ``(ReportData) -> Chart | None``.

Every chart: a title, units on every axis, the backend's fixed colour
(``style.colour``, declared by each backend), a line style/marker per host when several hosts are
compared, and a footnote naming host, kernel, cgroup version and accelerator
("emulated (TCG)" where a VM ran without KVM).  A chart whose data is absent
returns None and the report says so instead.

Figures are built with ``matplotlib.figure.Figure`` directly (no pyplot): no
global state, no GUI backend, the Agg canvas renders PNG and SVG.
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
    seen = {}
    for s, b, sp in zip(df["series"], df["backend"], df["split"], strict=True):
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


# -- startup ---------------------------------------------------------------------
def startup_latency(data: ReportData) -> Chart | None:
    """ECDF of launch→ready per backend, one panel per workload; a dot marks each median."""
    df = data.of("startup")
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


def startup_phases(data: ReportData) -> Chart | None:
    """Stacked bars: each phase's median as a share of the startup, total written at the end."""
    df = data.of("startup")
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


# -- memory ----------------------------------------------------------------------
def memory_overhead(data: ReportData) -> Chart | None:
    s = summary_rows(data, "memory")
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
    ax.set_ylim(bottom=min(0.0, float(s[["ci_lo", "median"]].min().min()) * 1.3),
                top=float(s[["ci_hi", "median"]].max().max()) * 1.6)
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


def density(data: ReportData) -> Chart | None:
    """MemAvailable drop vs instances with the fitted line; a zoomed panel when one backend dwarfs others."""
    rows = data.of("density")
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
    return Chart("density", title, "Drop of MemAvailable as idle instances accumulate, with the Theil–Sen line of "
                 "every ramp pooled (slope = marginal MiB per instance, 95 % interval in the legend; "
                 "\"not resolved\" when the interval is wider than the slope).", fig)


# -- enforcement --------------------------------------------------------------------
def cpu_quota(data: ReportData) -> Chart | None:
    s = summary_rows(data, "cpu_quota")
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
    finish(fig, title, data.footnote(notes_of(data.of("cpu_quota"))))
    return Chart("cpu_quota", title, "Median CPUs delivered (95 % CI) against the quota asked for; "
                 "the dashed diagonal is perfect enforcement.", fig)


def cpu_ratio(data: ReportData) -> Chart | None:
    s = summary_rows(data, "cpu_quota", "cpu_ratio")
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
    return case_chart(data, "cpu_quota", fig, ax, "cpu_ratio", "CPU quota accuracy",
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


def mem_limit(data: ReportData) -> Chart | None:
    s = summary_rows(data, "mem_limit")
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
    return case_chart(data, "mem_limit", fig, ax, "mem_limit", "Memory limit: peak usage and OOM kills",
                      "Median peak memory per case (95 % CI); the black line is the limit; 'OOM' marks cases "
                      "whose workload was OOM-killed (k/n when only some repetitions were).",
                      ylabel="peak memory (MiB)")


def pids_limit(data: ReportData) -> Chart | None:
    s = summary_rows(data, "pids_limit", "pids_reached")
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
    return case_chart(data, "pids_limit", fig, ax, "pids_limit", "Pids limit: processes reached",
                      "Median processes the workload reached per case; the black line is the limit, "
                      "the dashed line what it tried to reach.",
                      ylabel="processes reached (count)")


#: section -> the charts it shows, in order
CHARTS: dict[str, tuple[Callable[[ReportData], Chart | None], ...]] = {
    "startup": (startup_latency, startup_phases),
    "memory": (memory_overhead,),
    "density": (density,),
    "cpu_quota": (cpu_quota, cpu_ratio),
    "mem_limit": (mem_limit,),
    "pids_limit": (pids_limit,),
}
