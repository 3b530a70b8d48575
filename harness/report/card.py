"""``isobench report --card``: one 16:9 image for a slide or a blog post.

The headline chart (each backend's startup, memory and CPU accuracy as a
ratio to bare metal, with 95 % intervals) and the facts a reader needs to
trust it: host and CPU, kernel, cgroup version, accelerator (emulated guests
say so), commit, and the date of the run.  PNG at 1600×900 and SVG.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from harness.report import findings, headline, style
from harness.report.model import ReportData

SIZE = (16.0, 9.0)  # inches; at DPI 100: 1600 × 900 px
DPI = 100


def facts(data: ReportData) -> list[str]:
    """One line per run: where and on what the numbers were measured."""
    from harness.report.model import accel_words

    lines = []
    for r in data.runs:
        cpu, cores = r.host.get("cpu_model"), r.host.get("cores")
        hw = ", ".join(str(x) for x in (cpu, f"{cores} cores" if cores else None) if x)
        acc = accel_words(data.accels(r)) or "none (no VM backend)"
        commit = str(r.host.get("commit") or "?")[:10] + (" (dirty)" if r.host.get("dirty") else "")
        when = str(r.manifest.get("started") or "")[:10]
        lines.append(f"host {r.hostname}" + (f" ({hw})" if hw else "") + f" · kernel {r.kernel} · "
                     f"cgroup v{r.cgroup_version} · accelerator: {acc} · commit {commit}"
                     + (f" · {when}" if when else "") + f" · run {r.run_id}")
    return lines


def build(data: ReportData, out: Path) -> list[Path] | None:
    """Write ``out``/card.png and card.svg; None when there is nothing to compare with bare metal."""
    import matplotlib
    from matplotlib.figure import Figure

    head = [h for h in findings.rows(data) if h.ratio is not None]
    ref = findings.reference_backend(data)
    if not head or ref is None:
        return None
    with matplotlib.rc_context({**style.RC, "font.size": 14, "axes.titlesize": 16, "xtick.labelsize": 12,
                                "ytick.labelsize": 13, "axes.labelsize": 13}):
        fig = Figure(figsize=SIZE, dpi=DPI)
        titles = headline.panels()
        families = [f for f in titles if any(h.family == f for h in head)]
        series = sorted({(h.series, h.backend, str(h.split)) for h in head},
                        key=lambda t: (style.backend_rank(t[1]), t[2]), reverse=True)
        labels = [s for s, _, _ in series]
        axes = fig.subplots(1, len(families), sharey=True)
        axes = list(axes) if len(families) > 1 else [axes]
        for ax, family in zip(axes, families, strict=True):
            headline.panel(ax, titles[family], [h for h in head if h.family == family], labels, ref)
            for t in ax.texts:
                t.set_fontsize(12)
            ax.set_title(titles[family], fontsize=15, loc="left")
        fig.suptitle(f"Bare metal vs. containers vs. VMs: each backend relative to {ref}", fontsize=22,
                     fontweight="bold", x=0.03, ha="left", y=0.96)
        fig.text(0.03, 0.875, "ratio of medians with 95 % intervals, log scale · hollow: too few samples "
                 "for an interval · dashed line: same as " + ref, fontsize=13, color="#444444")
        foot = [w for line in facts(data) for w in textwrap.wrap(line, 150, subsequent_indent="    ")]
        fig.text(0.03, 0.03, "\n".join(foot), fontsize=11, color="#333333", va="bottom", linespacing=1.5)
        fig.text(0.97, 0.955, "isobench", fontsize=14, color="#999999", ha="right", va="top", fontweight="bold")
        fig.subplots_adjust(left=0.16, right=0.97, top=0.78, bottom=0.17 + 0.03 * (len(foot) - 1), wspace=0.12)
        out.mkdir(parents=True, exist_ok=True)
        paths = [out / "card.png", out / "card.svg"]
        for p in paths:
            fig.savefig(p, dpi=DPI, metadata={"Date": None} if p.suffix == ".svg" else None)
    return paths

