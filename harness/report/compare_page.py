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

from harness.metric import HIGHER, LOWER
from harness.report import chartkit as charts
from harness.report import page_html, style
from harness.stats.estimate import ratio

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
    def base(self) -> Sequence[float]: ...
    @property
    def new(self) -> Sequence[float]: ...
    @property
    def verdict(self) -> str: ...
    @property
    def why(self) -> str: ...


def label(r: Row) -> str:
    k = r.key
    params = f" {k['params']}" if k.get("params") else ""
    host = f" @ {k['host']}" if "host" in k else ""
    return f"{k['backend']}{host} · {k['measurement']}/{k['workload']}{params} · {k['metric']}"


def estimate(r: Row) -> tuple[float, float, float, bool]:
    """(new/base, lo, hi, resolved): the interval the verdict rests on where the row carries one
    (``lo``/``hi`` of the relative change), else a bootstrap interval of the ratio of medians
    (metrics judged by their distance from 1, whose change is not relative)."""
    change, lo, hi = (getattr(r, k, math.nan) for k in ("change", "lo", "hi"))
    if getattr(r, "direction", None) in (LOWER, HIGHER) and all(math.isfinite(v) for v in (change, lo, hi)):
        return 1 + change, 1 + lo, 1 + hi, True
    e = ratio(r.new, r.base)
    return e.value, e.lo, e.hi, e.resolved


def changed(rows: Sequence[Row]) -> list[Row]:
    """Regressions first, then improvements; within each, the largest change first."""
    out = [r for r in rows if r.verdict in CHANGED]

    def size(r: Row) -> float:
        value = estimate(r)[0]
        return -abs(math.log(value)) if math.isfinite(value) and value > 0 else 0.0

    return sorted(out, key=lambda r: (CHANGED.index(r.verdict), size(r)))


def overview(rows: Sequence[Row], base: str, new: str) -> charts.Chart | None:
    """Ratio new/base of each changed metric with the interval its verdict rests on."""
    rows = list(rows)
    if not rows:
        return None
    fig, axes = charts.figure(size=(7.0, 0.3 * len(rows) + 0.9))
    ax = axes[0, 0]
    lo_all, hi_all = [1.0], [1.0]
    for y, r in enumerate(reversed(rows)):
        value, elo, ehi, resolved = estimate(r)
        colour = VERDICT_COLOURS.get(r.verdict, OTHER_COLOUR)
        if not (math.isfinite(value) and value > 0):
            continue
        margin = getattr(r, "margin", math.nan)
        if math.isfinite(margin) and 0 < margin < 1:  # the change the verdict calls "no change"
            ax.fill_betweenx([y - 0.35, y + 0.35], 1 - margin, 1 + margin, color="#dddddd", linewidth=0)
        if resolved and elo > 0:
            ax.errorbar([value], [y], xerr=[[max(value - elo, 0)], [max(ehi - value, 0)]], fmt="o",
                        color=colour, capsize=3, markersize=5)
            lo_all.append(elo)
            hi_all.append(ehi)
        else:
            ax.plot([value], [y], "o", markerfacecolor="white", markeredgecolor=colour, markersize=5)
        lo_all.append(value)
        hi_all.append(value)
        ax.annotate(f"{value - 1:+.0%}", (value, y), textcoords="offset points", xytext=(6, 3), fontsize=7)
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
    charts.finish(fig, title, "whiskers: the interval the verdict rests on; grey band: the margin within which a "
                  "change counts as none; hollow: no interval.", legend=False)
    return charts.Chart("compare_overview", title, "Each changed metric: its new median against its base median, "
                        "with the interval its verdict rests on; right of the dashed line is larger; red is a "
                        "regression, green an improvement, the grey band the margin.", fig)


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
    value, elo, ehi, resolved = estimate(r)
    change = f"{value - 1:+.1%}" + (f" [{elo - 1:+.1%} … {ehi - 1:+.1%}]" if resolved else "")
    title = f"{r.verdict}: {label(r)}"
    charts.finish(fig, title, f"median change {change} · n={len(r.base)} → {len(r.new)}"
                  + (f" · {r.why}" if r.why else ""), legend=False)
    return charts.Chart(f"ab_{i:02d}", title, f"{label(r)}: base and new samples with their medians (left) and in "
                        f"the order they were measured (right); median change {change}.", fig)


def write(rows: Sequence[Row], base: str, new: str, table_md: str, out: Path) -> Path:
    """Write ``out``/compare.html, compare.md and charts/; returns the HTML path."""
    import matplotlib

    base, new = short(base), short(new)
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
        value, elo, ehi, resolved = estimate(r)
        change = "" if not math.isfinite(value) else f"{value - 1:+.1%}" + (
            f" [{elo - 1:+.1%} … {ehi - 1:+.1%}]" if resolved else "")
        out.append({"series": label(r), "unit": r.key.get("unit", ""),
                    "base median": f"{style.fmt(float(np.median(r.base)))} (n={len(r.base)})" if len(r.base) else "",
                    "new median": f"{style.fmt(float(np.median(r.new)))} (n={len(r.new)})" if len(r.new) else "",
                    "change (interval)": change, "verdict": r.verdict + (f" — {r.why}" if r.why else "")})
    return pd.DataFrame(out)


def short(runs: str) -> str:
    """Run directories by their names (``results/A,results/B`` → ``A,B``): what a title can hold."""
    return ",".join(Path(r).name or r for r in str(runs).split(","))


def default_out(base: Path, new: Path) -> Path:
    return Path("reports") / f"compare-{base.resolve().name}-vs-{new.resolve().name}"

