"""report.html: findings and the headline chart first, everything else folded.

Self-contained: charts are embedded as data URIs, so the file can be mailed
or attached to a CI job; CSV links are relative to the report directory.
The helpers (``page``, ``img``, ``table``) also build the compare and
validate pages.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from harness.report.render import Document, Figure, Section

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

e = html.escape

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1240px;margin:1em auto;
padding:0 1em;color:#222;line-height:1.4}
h1{font-size:1.45em;margin:.2em 0}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em;font-size:1.2em}
h3{font-size:1em;margin:.8em 0 .2em}
.meta{font-size:.8em;color:#555;margin:.2em 0 .6em;white-space:pre-line}
.top{display:grid;grid-template-columns:minmax(0,1fr) minmax(0,1.05fr);gap:1.2em;align-items:start}
#findings h2{margin-top:.2em}#findings ul{margin:.1em 0 .5em;padding-left:1.2em}
#findings li{font-size:.88em;margin:.12em 0}
table{border-collapse:collapse;font-size:.8em;margin:.5em 0 1.2em}
th,td{border:1px solid #ddd;padding:.2em .45em;text-align:left;vertical-align:top}
th{background:#f4f4f4}tr:nth-child(even) td{background:#fafafa}
figure{margin:.6em 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.85em;color:#444}.status{padding:.35em .7em;border-radius:4px;background:#eef6ee;margin:.3em 0}
.status.bad{background:#fdf0e6}.empty{color:#777;font-style:italic}
details{margin:.4em 0}summary{cursor:pointer;font-weight:600}
.warn li{font-size:.86em}.csv{font-size:.85em}
.grid td.pass{background:#e6f4e6}.grid td.fail,.grid td.missing{background:#fbe1e1;font-weight:600}
.grid td.skipped{background:#f3f3f3;color:#666}
@media (max-width:900px){.top{grid-template-columns:1fr}}
"""


def page(title: str, body: Iterable[str]) -> str:
    return "\n".join(["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
                      '<meta name="viewport" content="width=device-width, initial-scale=1">',
                      f"<title>{e(title)}</title><style>{CSS}</style></head><body>", *body, "</body></html>"])


def img(report_dir: Path, stem: str) -> str:
    data = (report_dir / "charts" / f"{stem}.png").read_bytes()
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def table(df: pd.DataFrame) -> str:
    if df.empty:
        return '<p class="empty">(empty)</p>'
    return df.to_html(index=False, escape=True, border=0, na_rep="")


def figure(report_dir: Path, f: Figure, fid: str = "") -> str:
    ident = f' id="{e(fid)}"' if fid else ""
    return (f'<figure{ident}><img src="{img(report_dir, f.stem)}" alt="{e(f.title)}">'
            f"<figcaption>{e(f.caption)} <a href=\"charts/{e(f.stem)}.svg\">SVG</a></figcaption></figure>")


def render(doc: Document, report_dir: Path) -> str:
    bad = "" if doc.status == "completed" else " bad"
    parts = [f"<h1>{e(doc.title)}</h1>", f'<p class="meta">{e(doc.meta)}</p>',
             f'<p class="status{bad}"><b>Status:</b> {e(doc.status)}</p>', '<div class="top">',
             '<section id="findings"><h2>Findings</h2>']
    for f in doc.findings:
        items = [f'<a href="{e(f.link)}">{e(x)}</a>' if f.link else e(x) for x in f.lines]
        parts.append(f"<h3>{e(f.title)}</h3><ul>" + "".join(f"<li>{x}</li>" for x in items) + "</ul>")
    if not doc.findings:
        parts.append('<p class="empty">No measurements to summarise in this run.</p>')
    parts.append("</section>")
    parts.append(figure(report_dir, doc.headline, "headline") if doc.headline else
                 '<p class="empty" id="headline">No headline chart: it needs two backends in the run.</p>')
    parts.append("</div>")
    parts += _warnings(doc)
    for s in doc.sections:
        parts += _section(s, report_dir)
    parts += _details(doc)
    return page(doc.title, parts)


def _warnings(doc: Document) -> list[str]:
    n = doc.n_warnings
    out = [f'<h2 id="warnings">Warnings ({n})</h2>']
    if not n:
        out.append("<p>None: every series the findings state has enough samples for an interval, a narrow one, "
                   "no drift over the run, one mode, and no failed samples.</p>")
        return out
    out.append(f'<details id="warning-list"><summary>{n} warning{"s" if n != 1 else ""} about these numbers, '
               f'by backend</summary>')
    for backend, ws in doc.warnings.items():
        out.append(f"<h3>{e(backend)}</h3><ul class=\"warn\">"
                   + "".join(f"<li><b>{e(w.rule)}</b> · {e(w.text())}</li>" for w in ws) + "</ul>")
    if doc.failures:
        out.append("<h3>Failed samples, by error</h3><ul class=\"warn\">"
                   + "".join(f"<li>{e(f)}</li>" for f in doc.failures) + "</ul>")
    out.append("</details>")
    return out


def _section(s: Section, report_dir: Path) -> list[str]:
    out = [f"<h2>{e(s.title)}</h2>"]
    if s.intro:
        out.append(f"<p>{e(s.intro)}</p>")
    if s.empty and not s.figures and not s.tables:
        return out + [f'<p class="empty">{e(s.empty)}</p>']
    out += [figure(report_dir, f) for f in s.figures]
    for t in s.tables:
        csv = f' · <a href="{e(t.csv)}">CSV</a>' if t.csv else ""
        out.append(f'<details class="stats"><summary>{e(t.caption)} ({len(t.frame)} rows)</summary>'
                   f"{table(t.frame)}</details>")
        if csv:
            out.append(f'<p class="csv">{e(t.caption)}{csv}</p>')
    return out


def _details(doc: Document) -> list[str]:
    out = ['<h2 id="details">Details</h2>',
           '<details id="host"><summary>Host metadata and runs</summary>', "<h3>Runs</h3>", table(doc.runs),
           "<h3>Host</h3>", table(doc.hosts), "</details>"]
    if doc.csvs:
        out.append('<details id="raw"><summary>Raw tables (CSV)</summary><ul>'
                   + "".join(f'<li><a href="{e(c)}">{e(c)}</a></li>' for c in doc.csvs) + "</ul></details>")
    return out
