"""The history report: a page per metric (its lines over the runs, the steps found, a table) and
an index.  Markdown with PNG charts, like ``isobench report``'s ``report.md``.

Every point is a run's median with its 95 % interval (hollow where the run had too few samples
for one); a step is a dashed line before the first run after it, labelled with its change; the
tables name that run, its commit and kernel, and what changed there.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from harness.history.lines import Line, Query, changed
from harness.stats.numbers import PROSE, fmt

#: panels drawn per metric (lines with a step first, then the longest); the table lists every line
MAX_PANELS = 12
#: a line of fewer runs is listed, not drawn
MIN_RUNS_DRAWN = 2
COLUMNS = 3


def _change(x: float, absolute: bool) -> str:
    if absolute:
        return f"{x:+.3g}"
    return f"{x:+.1%}"


def step_rows(lines: Sequence[Line]) -> list[list[str]]:
    out = []
    for ln in lines:
        for s in ln.steps:
            r = ln.rows.iloc[s.index]
            one = ln.direction == "one"
            out.append([ln.label, f"`{r['run_id']}`", str(r["started"])[:16], str(r.get("commit") or "?")[:10],
                        str(r["kernel"]), f"{s.kind} {_change(s.change, one)} [{_change(s.lo, one)}, "
                        f"{_change(s.hi, one)}]", fmt(s.q, PROSE), f"{s.before} vs {s.after}", changed(ln, s)])
    return out


def _median(r: object) -> str:
    med, lo, hi = (getattr(r, k) for k in ("median", "ci_lo", "ci_hi"))
    if not math.isfinite(med):
        return "no value"
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return f"{fmt(med, PROSE)} (too few samples for an interval)"
    return f"{fmt(med, PROSE)} [{fmt(lo, PROSE)}, {fmt(hi, PROSE)}]"


def line_rows(lines: Sequence[Line]) -> list[list[str]]:
    out = []
    for ln in lines:
        last = next(ln.rows.tail(1).itertuples())
        out.append([ln.label, str(len(ln.rows)), str(ln.rows["started"].iloc[0])[:10],
                    str(ln.rows["started"].iloc[-1])[:10], _median(last),
                    ", ".join(f"at `{ln.rows['run_id'].iloc[s.index]}`" for s in ln.steps) or "none"])
    return out


def _table(head: list[str], rows: list[list[str]]) -> str:
    def cell(s: str) -> str:
        return s.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def method(q: Query) -> str:
    return (f"Each point is one run: its median with the 95 % interval of that median. A step is tested at "
            f"every boundary between neighbouring groups of runs (by {q.by}) as `isobench compare` tests two "
            f"sets of runs -- the run as the unit, the {q.window} runs before against the {q.window} after, "
            f"Student's t on run medians -- and called where the p-value, Holm-adjusted over the line's "
            f"boundaries, is below {q.alpha:g} and the change is beyond the {q.threshold:.0%} margin. False-alarm "
            f"rate: a line without a step shows one with probability at most {q.alpha:.0%} (Holm holds whatever "
            f"the overlap of the windows); the change's interval is the {1 - 2 * q.alpha:.0%} interval the "
            f"verdict uses.")


def chart(metric: str, lines: Sequence[Line], out: Path) -> Path | None:
    """Small multiples, a panel per line of ``MIN_RUNS_DRAWN`` runs or more: the runs' medians with
    their intervals and the steps (None: no line to draw)."""
    import numpy as np
    from matplotlib.figure import Figure

    from harness.report import style

    drawable = [ln for ln in lines if len(ln.rows) >= MIN_RUNS_DRAWN]
    shown = sorted(drawable, key=lambda ln: (not ln.steps, -len(ln.rows), ln.label))[:MAX_PANELS]
    if not shown:
        return None
    ncols = min(COLUMNS, len(shown))
    nrows = math.ceil(len(shown) / ncols)
    fig = Figure(figsize=(3.6 * ncols, 2.5 * nrows + 0.6))
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for ax, ln in zip(axes, shown, strict=False):
        r = ln.rows
        x = np.arange(len(r))
        med, lo, hi = (r[c].to_numpy(dtype=float) for c in ("median", "ci_lo", "ci_hi"))
        colour = style.colour(str(r["backend"].iloc[0]))
        has = np.isfinite(lo) & np.isfinite(hi)
        ax.errorbar(x[has], med[has], yerr=[med[has] - lo[has], hi[has] - med[has]], fmt="o", ms=3.5,
                    color=colour, ecolor=colour, elinewidth=1, capsize=2)
        ax.plot(x[~has], med[~has], "o", ms=3.5, mfc="none", color=colour)
        for s in ln.steps:
            ax.axvline(s.index - 0.5, color="#D55E00", ls="--", lw=1)
            ax.annotate(_change(s.change, ln.direction == "one"), (s.index - 0.5, 1), xycoords=("data", "axes fraction"),
                        ha="left", va="top", fontsize=7, color="#D55E00")
        groups = [p.group for p in ln.points]
        starts = [i for i in range(len(groups)) if i == 0 or groups[i] != groups[i - 1]]
        step = max(1, math.ceil(len(starts) / 8))
        ax.set_xticks(starts[::step], [groups[i][:12] for i in starts[::step]], rotation=45, ha="right", fontsize=6.5)
        ax.set_title(ln.label, fontsize=7.5)
        ax.set_ylabel(ln.unit, fontsize=7.5)
        ax.tick_params(axis="y", labelsize=7)
    for ax in axes[len(shown):]:
        ax.set_visible(False)
    fig.suptitle(f"{metric} over the runs" + (f" ({len(shown)} of {len(lines)} lines: those with steps, "
                                                f"then the longest)" if len(shown) < len(lines) else ""),
                 fontsize=10, fontweight="bold")
    fig.tight_layout()
    (out / "charts").mkdir(parents=True, exist_ok=True)
    png = out / "charts" / f"{metric}.png"
    fig.savefig(png, dpi=style.DPI)
    return png


def write(lines: Sequence[Line], q: Query, out: Path, runs: int) -> Path:
    """The index and a page per metric under ``out``; returns the index."""
    out.mkdir(parents=True, exist_ok=True)
    metrics = list(dict.fromkeys(ln.metric for ln in lines))
    index = ["# isobench history", "", f"{runs} runs, {len(lines)} lines, "
             f"{sum(len(ln.steps) for ln in lines)} steps found.", "", method(q), "",
             _table(["metric", "lines", "steps", "page"],
                    [[m, str(sum(ln.metric == m for ln in lines)), str(sum(len(ln.steps) for ln in lines
                                                                          if ln.metric == m)), f"[{m}]({m}.md)"]
                     for m in metrics])]
    for m in metrics:
        mine = [ln for ln in lines if ln.metric == m]
        png = chart(m, mine, out)
        page = [f"# History — {m} ({mine[0].unit}, better: {mine[0].direction})", "", method(q), ""]
        if png is not None:
            page += [f"![{m} over the runs](charts/{png.name})", ""]
        steps = step_rows(mine)
        page += ["## Steps", "", _table(["line", "first run after", "started", "commit", "kernel",
                                         f"change [{1 - 2 * q.alpha:.0%} interval]", "adjusted p", "runs compared",
                                         "what changed there"], steps) if steps else "No step in these lines.", ""]
        page += ["## Lines", "", _table(["line", "runs", "first", "last", "last median [95 % interval]", "steps"],
                                        line_rows(mine)), ""]
        (out / f"{m}.md").write_text("\n".join(page))
    (out / "index.md").write_text("\n".join(index) + "\n")
    return out / "index.md"
