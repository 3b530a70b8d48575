"""``isobench compare`` as a page: compare.html / compare.md beside the terminal table.

Like Firecracker's ``ab_plot``: one overview of every changed metric (the
ratio new/base of its medians with a 95 % interval, log scale, coloured by
verdict), then for each changed metric the two samples side by side and in
the order they were measured, so a reader sees whether a "regression" is a
shift of the whole distribution, a few slow outliers, or drift within a run.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from harness.report import chartkit as charts
from harness.report import intervals, page_html, style

#: colours of the verdicts (regressions stand out; "no change" recedes)
VERDICT_COLOURS = {"regression": "#C0392B", "improvement": "#1E8449"}
OTHER_COLOUR = "#7F8C8D"
#: at most this many per-metric A/B charts (the rest are in the table)
MAX_DETAIL = 12
#: verdicts that count as a change worth a chart
CHANGED = ("regression", "improvement")


class Row(Protocol):
    """What the page needs of a ``harness.compare`` row (read-only: rows are frozen)."""

    @property
    def key(self) -> dict[str, Any]: ...
    @property
    def base(self) -> list[float]: ...
    @property
    def new(self) -> list[float]: ...
    @property
    def verdict(self) -> str: ...
    @property
    def why(self) -> str: ...


def label(r: Row) -> str:
    k = r.key
    params = f" {k['params']}" if k.get("params") else ""
    return f"{k['backend']} · {k['measurement']}/{k['workload']}{params} · {k['metric']}"


def changed(rows: Sequence[Row]) -> list[Row]:
    """Regressions first, then improvements; within each, the largest change first."""
    out = [r for r in rows if r.verdict in CHANGED]

    def size(r: Row) -> float:
        e = intervals.ratio(r.new, r.base)
        return -abs(math.log(e.value)) if e.value and math.isfinite(e.value) and e.value > 0 else 0.0

    return sorted(out, key=lambda r: (CHANGED.index(r.verdict), size(r)))


def overview(rows: Sequence[Row], base: str, new: str) -> charts.Chart | None:
    """Ratio new/base of each changed metric with its 95 % interval, log scale."""
    rows = list(rows)
    if not rows:
        return None
    fig, axes = charts.figure(size=(7.0, 0.3 * len(rows) + 0.9))
    ax = axes[0, 0]
    lo_all, hi_all = [1.0], [1.0]
    for y, r in enumerate(reversed(rows)):
        e = intervals.ratio(r.new, r.base)
        colour = VERDICT_COLOURS.get(r.verdict, OTHER_COLOUR)
        if not (math.isfinite(e.value) and e.value > 0):
            continue
        if e.resolved:
            ax.errorbar([e.value], [y], xerr=[[max(e.value - e.lo, 0)], [max(e.hi - e.value, 0)]], fmt="o",
                        color=colour, capsize=3, markersize=5)
            lo_all.append(e.lo)
            hi_all.append(e.hi)
        else:
            ax.plot([e.value], [y], "o", markerfacecolor="white", markeredgecolor=colour, markersize=5)
        lo_all.append(e.value)
        hi_all.append(e.value)
        ax.annotate(f"{e.value - 1:+.0%}", (e.value, y), textcoords="offset points", xytext=(6, 3), fontsize=7)
    ax.axvline(1.0, color="#888888", linestyle="--", linewidth=1)
    lo, hi = min(v for v in lo_all if v > 0), max(hi_all)
    from matplotlib.ticker import FuncFormatter, NullFormatter

    if hi / lo < 4:  # changes of tens of percent read best as percentages on a plain axis
        pad = (hi - lo) * 0.12 + 0.01
        ax.set_xlim(lo - pad, hi + pad)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v - 1:+.0%}"))
        scale = "change of the median"
    else:
        ax.set_xscale("log")
        pad = math.log10(hi / lo) * 0.15
        ax.set_xlim(10 ** (math.log10(lo) - pad), 10 ** (math.log10(hi) + pad))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.3g}×"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        scale = "ratio of medians, log scale"
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([label(r) for r in reversed(rows)], fontsize=7)
    ax.set_xlabel(f"{new} vs {base}: {scale}")
    ax.grid(axis="y", visible=False)
    title = f"What changed: {base} → {new}"
    charts.finish(fig, title, "95 % intervals: bootstrap of the ratio of medians; hollow: too few samples.",
                  legend=False)
    return charts.Chart("compare_overview", title, "Each changed metric: its new median against its base median, "
                        "with a 95 % interval; right of the dashed line is larger; red is a regression, green an "
                        "improvement.", fig)


def ab_chart(r: Row, i: int, base: str, new: str) -> charts.Chart:
    """One metric: both samples as dots with their medians (left), and in measurement order (right)."""
    fig, axes = charts.figure(1, 2, size=(7.0, 2.4), gridspec_kw={"width_ratios": [1, 2]})
    left, right = axes[0, 0], axes[0, 1]
    colour = VERDICT_COLOURS.get(r.verdict, OTHER_COLOUR)
    rng = np.random.default_rng(i)
    for x, (name, values, c) in enumerate(((base, r.base, "#888888"), (new, r.new, colour))):
        v = np.asarray(values, dtype=float)
        left.scatter(x + rng.uniform(-0.12, 0.12, v.size), v, s=10, color=c, alpha=0.6, linewidths=0)
        if v.size:
            left.hlines(np.median(v), x - 0.25, x + 0.25, color=c, linewidth=2)
        right.plot(np.arange(v.size), v, marker="o", markersize=3, linewidth=1, color=c, label=name)
    left.set_xticks([0, 1])
    left.set_xticklabels(["base", "new"])
    left.set_xlim(-0.6, 1.6)
    unit = r.key.get("unit") or ""
    left.set_ylabel(f"{r.key['metric']} ({unit})" if unit else r.key["metric"])
    right.set_xlabel("sample, in the order measured")
    right.legend(fontsize=7, frameon=False)
    e = intervals.ratio(r.new, r.base)
    change = f"{e.value - 1:+.1%}" + (f" [{e.lo - 1:+.1%} … {e.hi - 1:+.1%}]" if e.resolved else "")
    title = f"{r.verdict}: {label(r)}"
    charts.finish(fig, title, f"median change {change} (95 % interval) · n={len(r.base)} → {len(r.new)}"
                  + (f" · {r.why}" if r.why else ""), legend=False)
    return charts.Chart(f"ab_{i:02d}", title, f"{label(r)}: base and new samples with their medians (left) and in "
                        f"the order they were measured (right); median change {change}.", fig)


def write(rows: Sequence[Row], base: str, new: str, table_md: str, out: Path) -> Path:
    """Write ``out``/compare.html, compare.md and charts/; returns the HTML path."""
    import matplotlib

    (out / "charts").mkdir(parents=True, exist_ok=True)
    for stale in (out / "charts").glob("*.png"):
        stale.unlink()
    moved = changed(rows)
    figs: list[charts.Chart] = []
    with matplotlib.rc_context(style.RC):
        top = overview(moved, base, new)
        if top is not None:
            figs.append(top)
        figs += [ab_chart(r, i, base, new) for i, r in enumerate(moved[:MAX_DETAIL])]
        for c in figs:
            c.fig.savefig(out / "charts" / f"{c.name}.png", dpi=style.DPI)
    verdicts = sorted(dict.fromkeys(r.verdict for r in rows), key=lambda v: (v not in CHANGED, CHANGED.index(v)
                                                                           if v in CHANGED else 0, v))
    counts = {v: sum(r.verdict == v for r in rows) for v in verdicts}
    summary = ", ".join(f"{n} {v}" for v, n in counts.items())
    more = f" ({len(moved) - MAX_DETAIL} more changed metrics are in the table only)" if len(moved) > MAX_DETAIL else ""
    title = f"isobench compare — {base} → {new}"
    md = [f"# {title}", "", f"**{summary}.**{more}", ""]
    body = [f"<h1>{page_html.e(title)}</h1>", f"<p><b>{page_html.e(summary)}.</b>{page_html.e(more)}</p>"]
    if not moved:
        md += ["No metric changed beyond the threshold with significance.", ""]
        body.append("<p>No metric changed beyond the threshold with significance.</p>")
    for c in figs:
        md += [f"![{c.title}](charts/{c.name}.png)", "", f"*{c.caption}*", ""]
        body.append(f'<figure><img src="{page_html.img(out, c.name)}" alt="{page_html.e(c.title)}">'
                    f"<figcaption>{page_html.e(c.caption)}</figcaption></figure>")
    md += ["<details>", "<summary>Every compared metric</summary>", "", table_md, "", "</details>", ""]
    body.append(f"<details><summary>Every compared metric ({len(rows)})</summary>{page_html.table(frame(rows))}"
                "</details>")
    (out / "compare.md").write_text("\n".join(md))
    html = out / "compare.html"
    html.write_text(page_html.page(title, body))
    return html


def frame(rows: Sequence[Row]) -> Any:
    """Every row for the HTML table: changes first, with the interval of the change."""
    import pandas as pd

    order = {v: i for i, v in enumerate(CHANGED)}
    out = []
    for r in sorted(rows, key=lambda r: order.get(r.verdict, len(order))):
        e = intervals.ratio(r.new, r.base)
        change = "" if not math.isfinite(e.value) else f"{e.value - 1:+.1%}" + (
            f" [{e.lo - 1:+.1%} … {e.hi - 1:+.1%}]" if e.resolved else "")
        out.append({"series": label(r), "unit": r.key.get("unit", ""),
                    "base median": f"{style.fmt(float(np.median(r.base)))} (n={len(r.base)})" if r.base else "",
                    "new median": f"{style.fmt(float(np.median(r.new)))} (n={len(r.new)})" if r.new else "",
                    "change (95 % CI)": change, "verdict": r.verdict + (f" — {r.why}" if r.why else "")})
    return pd.DataFrame(out)


def default_out(base: Path, new: Path) -> Path:
    return Path("reports") / f"compare-{base.resolve().name}-vs-{new.resolve().name}"

