"""report.md: the findings and the headline chart, then warnings, charts, and folded details.

GitHub renders ``<details>`` in Markdown, so statistics and host metadata
fold there too; elsewhere they simply follow the findings.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.report.render import Document, Figure

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd


def table(df: pd.DataFrame) -> str:
    if df.empty:
        return "_(empty)_"
    return df.to_markdown(index=False)


def figure(f: Figure) -> list[str]:
    return [f"![{f.title}](charts/{f.stem}.png)", "", f"*{f.caption}* ([SVG](charts/{f.stem}.svg))", ""]


def folded(summary: str, body: list[str]) -> list[str]:
    return ["<details>", f"<summary>{summary}</summary>", "", *body, "", "</details>", ""]


def render(doc: Document) -> str:
    out = [f"# {doc.title}", "", *[f"{line}  " for line in doc.meta.splitlines()], "",
           f"**Status:** {doc.status}", "", "## Findings", ""]
    for f in doc.findings:
        out += [f"**{f.title}**", "", *[f"- {x}" for x in f.lines], ""]
    if not doc.findings:
        out += ["_No measurements to summarise in this run._", ""]
    if doc.headline:
        out += figure(doc.headline)
    n = doc.n_warnings
    out += [f"## Warnings ({n})", ""]
    if n:
        body = []
        for backend, ws in doc.warnings.items():
            body += [f"**{backend}**", "", *[f"- *{w.rule}* · {w.text()}" for w in ws], ""]
        if doc.failures:
            body += ["**Failed samples, by error**", "", *[f"- {f}" for f in doc.failures], ""]
        out += folded(f"{n} warning{'s' if n != 1 else ''} about these numbers, by backend", body)
    else:
        out += ["None: every series the findings state has enough samples for an interval, a narrow one, "
                "no drift over the run, one mode, and no failed samples.", ""]
    for s in doc.sections:
        out += [f"## {s.title}", ""]
        if s.intro:
            out += [s.intro, ""]
        if s.empty and not s.figures and not s.tables:
            out += [f"_{s.empty}_", ""]
            continue
        for fig in s.figures:
            out += figure(fig)
        for t in s.tables:
            out += folded(f"{t.caption} ({len(t.frame)} rows)", [table(t.frame)])
            if t.csv:
                out += [f"{t.caption}: [CSV]({t.csv})", ""]
    out += ["## Details", ""]
    out += folded("Host metadata and runs", ["**Runs**", "", table(doc.runs), "", "**Host**", "", table(doc.hosts)])
    if doc.csvs:
        out += folded("Raw tables (CSV)", [f"- [{c}]({c})" for c in doc.csvs])
    return "\n".join(out)
