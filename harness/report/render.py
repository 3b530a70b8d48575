"""The two renderings of a report: ``report.md`` (charts as relative PNG links) and a
self-contained ``report.html`` (PNGs embedded as base64 data URIs, no external files)."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.report.model import ReportData, accel_words

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd


@dataclass
class Figure:
    stem: str  # charts/<stem>.png and .svg
    title: str
    caption: str


@dataclass
class Table:
    caption: str
    frame: pd.DataFrame  # formatted for reading
    csv: str | None = None  # path relative to the report dir


@dataclass
class Section:
    title: str
    intro: str = ""
    figures: list[Figure] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    empty: str = ""  # shown instead when there is nothing else


@dataclass
class Document:
    title: str
    status: str
    runs: pd.DataFrame
    hosts: pd.DataFrame
    warnings: list[str]
    failures: list[str]
    sections: list[Section]


def status_line(data: ReportData) -> str:
    states = sorted({r.status for r in data.runs})
    if states == ["completed"]:
        return "completed"
    detail = ", ".join(f"{r.run_id}: {r.status}" for r in data.runs)
    if "interrupted" in states:
        return f"interrupted ({detail}) — the run stopped before finishing; some sections may be incomplete"
    if "running" in states:
        return f"running ({detail}) — still being written when this report was built; it is partial"
    return detail


def runs_table(data: ReportData) -> pd.DataFrame:
    import pandas as pd

    out = []
    for r in data.runs:
        m = r.manifest
        scen = m.get("scenario")
        scen = scen.get("name") if isinstance(scen, dict) else scen
        counts = m.get("samples") if isinstance(m.get("samples"), dict) else None
        if counts is None and not data.rows.empty:
            mine = data.rows[data.rows["run"] == r.run_id]
            counts = mine["status"].value_counts().to_dict()
        out.append({"run": r.run_id, "status": r.status, "scenario": scen or "",
                    "started": m.get("started") or "", "ended": m.get("ended") or "",
                    "samples ok": (counts or {}).get("ok", 0), "samples failed": (counts or {}).get("failed", 0),
                    "host": r.hostname, "kernel": r.kernel})
    return pd.DataFrame(out)


def hosts_table(data: ReportData) -> pd.DataFrame:
    """Every scalar fact each manifest recorded about its host, one column per host."""
    import pandas as pd

    cols: dict[str, dict[str, str]] = {}
    for r in data.runs:
        facts: dict[str, str] = {}
        for k, v in r.host.items():
            if isinstance(v, dict):
                for k2, v2 in v.items():
                    if not isinstance(v2, (dict, list)):
                        facts[f"{k}.{k2}"] = str(v2)
            elif isinstance(v, list):
                facts[k] = ", ".join(map(str, v))
            else:
                facts[k] = str(v)
        acc = accel_words({b: {a} for b, a in r.accels().items()})
        facts["accelerator"] = acc or "none"
        name = r.hostname if r.hostname not in cols else f"{r.hostname} ({r.run_id})"
        cols[name] = facts
    if not cols:
        return pd.DataFrame()
    keys = list(dict.fromkeys(k for f in cols.values() for k in f))
    return pd.DataFrame({"": keys, **{h: [f.get(k, "") for k in keys] for h, f in cols.items()}})


# -- Markdown ------------------------------------------------------------------------
def _md_table(df: pd.DataFrame) -> str:
    if df.empty:
        return "_(empty)_"
    return df.to_markdown(index=False)


def markdown(doc: Document) -> str:
    out = [f"# {doc.title}", "", f"**Status:** {doc.status}", "", "## Runs", "", _md_table(doc.runs), "",
           "## Host", "", _md_table(doc.hosts), "", "## Warnings", ""]
    if doc.warnings:
        out += [f"- {w}" for w in doc.warnings]
    else:
        out.append("No warnings: every series has at least 5 samples, a cv below 10 % and no outliers.")
    out.append("")
    if doc.failures:
        out += ["## Failed samples", ""] + [f"- {f}" for f in doc.failures] + [""]
    for s in doc.sections:
        out += [f"## {s.title}", ""]
        if s.intro:
            out += [s.intro, ""]
        if s.empty and not s.figures and not s.tables:
            out += [f"_{s.empty}_", ""]
            continue
        for f in s.figures:
            out += [f"![{f.title}](charts/{f.stem}.png)", "",
                    f"*{f.caption}* ([SVG](charts/{f.stem}.svg))", ""]
        for t in s.tables:
            out += [f"**{t.caption}**" + (f" ([CSV]({t.csv}))" if t.csv else ""), "", _md_table(t.frame), ""]
    return "\n".join(out)


# -- HTML ------------------------------------------------------------------------------
CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.4}
h1{font-size:1.6em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;font-size:.82em;margin:.5em 0 1.5em}
th,td{border:1px solid #ddd;padding:.25em .5em;text-align:left;vertical-align:top}
th{background:#f4f4f4}tr:nth-child(even) td{background:#fafafa}
figure{margin:1em 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.85em;color:#555}.status{padding:.5em .8em;border-radius:4px;background:#eef6ee}
.status.bad{background:#fdf0e6}.empty{color:#777;font-style:italic}ul.warn li{font-size:.88em}
"""


def _html_table(df: pd.DataFrame) -> str:
    if df.empty:
        return '<p class="empty">(empty)</p>'
    return df.to_html(index=False, escape=True, border=0, na_rep="")


def _img(report_dir: Path, stem: str) -> str:
    data = (report_dir / "charts" / f"{stem}.png").read_bytes()
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def render_html(doc: Document, report_dir: Path) -> str:
    e = html.escape
    bad = "" if doc.status == "completed" else " bad"
    parts: list[Any] = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(doc.title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{e(doc.title)}</h1>", f'<p class="status{bad}"><b>Status:</b> {e(doc.status)}</p>',
        "<h2>Runs</h2>", _html_table(doc.runs), "<h2>Host</h2>", _html_table(doc.hosts), "<h2>Warnings</h2>",
    ]
    if doc.warnings:
        parts.append('<ul class="warn">' + "".join(f"<li>{e(w)}</li>" for w in doc.warnings) + "</ul>")
    else:
        parts.append("<p>No warnings: every series has at least 5 samples, a cv below 10 % and no outliers.</p>")
    if doc.failures:
        parts.append("<h2>Failed samples</h2>")
        parts.append('<ul class="warn">' + "".join(f"<li>{e(f)}</li>" for f in doc.failures) + "</ul>")
    for s in doc.sections:
        parts.append(f"<h2>{e(s.title)}</h2>")
        if s.intro:
            parts.append(f"<p>{e(s.intro)}</p>")
        if s.empty and not s.figures and not s.tables:
            parts.append(f'<p class="empty">{e(s.empty)}</p>')
            continue
        for f in s.figures:
            parts.append(f'<figure><img src="{_img(report_dir, f.stem)}" alt="{e(f.title)}">'
                         f"<figcaption>{e(f.caption)}</figcaption></figure>")
        for t in s.tables:
            parts.append(f"<h3>{e(t.caption)}</h3>")
            parts.append(_html_table(t.frame))
    parts.append("</body></html>")
    return "\n".join(parts)
