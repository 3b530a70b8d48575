"""Tables, charts and a report from stored results (``isobench report``: ``harness.commands.report``).

Reads only what runs stored (``harness.results``); never measures.  Output::

    <out>/report.html     self-contained (charts embedded)
    <out>/report.md       charts linked as charts/*.png
    <out>/charts/*.png, *.svg
    <out>/tables/*.csv, *.md   (summary.csv holds every series)

pandas and matplotlib are imported inside the functions so that importing
this package (``isobench --help``) stays fast.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from harness.report.model import ReportData
    from harness.report.render import Section
    from harness.stats.series import SeriesKey

#: files build() owns inside the report directory (cleared before writing, nothing else is touched)
OWNED = {"charts": ("*.png", "*.svg"), "tables": ("*.csv", "*.md")}


def default_out(run_dirs: Sequence[Path | str]) -> Path:
    ids = [Path(d).resolve().name for d in run_dirs]
    if len(ids) == 1:
        return Path("reports") / ids[0]
    name = "compare-" + "-".join(ids[:3]) + (f"-and-{len(ids) - 3}-more" if len(ids) > 3 else "")
    return Path("reports") / name


def build(run_dirs: Sequence[Path | str], out_dir: Path | str | None = None, by: str = "auto") -> Path:
    """Build the report; returns its directory.  Prints nothing.

    Raises ``harness.results.ResultsError`` (or ``ValueError``) for input that is not a run.
    """
    import matplotlib

    from harness.measure import catalogue
    from harness.report import (
        caveats,
        chartkit,
        findings,
        headline,
        hosts,
        model,
        page_html,
        page_md,
        render,
        style,
        tables,
    )
    from runtimes.declaration import resolve

    data = model.load(run_dirs, by=by)
    out = Path(out_dir) if out_dir is not None else default_out(run_dirs)
    for sub, patterns in OWNED.items():
        (out / sub).mkdir(parents=True, exist_ok=True)
        for pattern in patterns:  # a rebuilt report must not show stale charts of an earlier build
            for stale in (out / sub).glob(pattern):
                stale.unlink()

    sections = []
    data.summary.to_csv(out / "tables" / "summary.csv", index=False)
    notes = caveats.notes(data)
    # a section per declared measurement, in declaration order, then one per undeclared one measured
    declared = catalogue().measurements
    measured = list(dict.fromkeys(data.rows["measurement"])) if not data.rows.empty else []
    names = list(declared) + [m for m in measured if m not in declared]
    with matplotlib.rc_context(style.RC):
        top = headline.chart(data)
        if top is not None:
            chartkit.save(top, out / "charts")
        for m in names:
            info = declared.get(m)
            sec = render.Section(info.section if info else f"Other: {m}")
            for ref in info.charts if info else ():
                chart = resolve(ref)(data, m)
                if chart is None:
                    continue
                chartkit.save(chart, out / "charts")
                sec.figures.append(render.Figure(chart.name, chart.title, chart.caption))
            summary = tables.for_measurement(data, m)
            if not summary.empty:
                summary.to_csv(out / "tables" / f"{m}.csv", index=False)
                shown = _with_notes(tables.display(summary), summary, notes)
                (out / "tables" / f"{m}.md").write_text(shown.to_markdown(index=False) + "\n")
                sec.tables.append(render.Table(f"{sec.title}: statistics per series", shown, f"tables/{m}.csv"))
            else:
                sec.empty = f"No {m} rows in {'this run' if len(data.runs) == 1 else 'these runs'}."
            sections.append(sec)
    sections += _ratio_sections(data, out)
    across = hosts.section(data, out)  # several hosts (a fleet): each headline figure host by host
    if across is not None:
        sections.insert(0, across)

    warned = caveats.grouped(caveats.warnings(data))
    doc = render.Document(
        title="isobench report — " + ", ".join(r.run_id for r in data.runs),
        status=render.status_line(data), meta=render.meta_line(data),
        findings=[f for f in [hosts.finding(data), *findings.findings(data, sum(len(w) for w in warned.values()))]
                  if f is not None],
        headline=render.Figure(top.name, top.title, top.caption) if top is not None else None,
        warnings=warned, failures=tables.failures_list(data), sections=sections,
        runs=render.runs_table(data), hosts=render.hosts_table(data),
        csvs=sorted(f"tables/{p.name}" for p in (out / "tables").glob("*.csv")))
    (out / "report.md").write_text(page_md.render(doc) + "\n")
    (out / "report.html").write_text(page_html.render(doc, out))
    return out


def _with_notes(shown: pd.DataFrame, summary: pd.DataFrame, notes: dict[SeriesKey, str]) -> pd.DataFrame:
    """Replace pyperf's cv-based warnings with the report's per-series checks (``caveats.notes``)."""
    from harness.stats.series import SeriesKey, param_columns

    pcols = param_columns(summary)
    keys = [SeriesKey.of(r, pcols, split=True) for _, r in summary.iterrows()]
    failed = [f"{int(n)} failed" if n else "" for n in summary["failed"]]
    shown = shown.drop(columns=["warnings"])
    shown["notes"] = ["; ".join(filter(None, [f, notes.get(k, "")])) for f, k in zip(failed, keys, strict=True)]
    return shown


def _ratio_sections(data: ReportData, out: Path) -> list[Section]:
    """"Startup vs. the floor" and "Peers": ratios of medians with bootstrap CIs, or a placeholder line."""
    from harness.report import tables

    return [
        _ratio_section(tables.floor_ratios(data), out, "floor", "Startup vs. the floor",
                       intro="How many times the floor (a lower bound: the critical path of the kernel "
                             "primitives of a launch, metrics floor_*) each backend's launch→ready median is, "
                             "with a BCa bootstrap 95 % CI; a floor above the median is reported invalid.",
                       table="Startup / floor (ratio of medians)",
                       empty="No floor_* measurements in these results."),
        _ratio_section(tables.peer_ratios(data), out, "peers", "Peers",
                       intro="Established tools next to ours: median(peer) / median(reference) "
                             "per metric (bwrap and oci:* against container, qemu against vm), BCa bootstrap "
                             "95 % CI; below 1 the peer is smaller/faster.",
                       table="Peer / reference (ratio of medians)",
                       empty="No peer backends (bwrap, oci:*, qemu) together with their reference in these results."),
    ]


def _ratio_section(ratios: pd.DataFrame, out: Path, csv: str, title: str, *, intro: str, table: str,
                   empty: str) -> Section:
    """One section of a ratio table (also written to tables/<csv>.csv), or ``empty`` when there is none."""
    from harness.report import render, tables

    s = render.Section(title, intro=intro)
    if ratios.empty:
        s.empty = empty
    else:
        ratios.to_csv(out / "tables" / f"{csv}.csv", index=False)
        s.tables.append(render.Table(table, tables.display_ratios(ratios), f"tables/{csv}.csv"))
    return s
