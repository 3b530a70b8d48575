"""``isobench validate`` as a page: validate.html / validate.md beside the terminal lines.

The gate's checks in a grid: one row per case (measurement, workload,
params), one column per backend; a cell says pass / fail / missing / skipped
and, when it is not a pass, which bound and why.  Rows with a failure come
first, then missing, then the rest, so a red gate is explained at the top.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.report import page_html, style

#: the worst outcome of a cell wins; rows sort by their worst cell
SEVERITY = {"fail": 0, "missing": 1, "skipped": 2, "pass": 3}
MARK = {"fail": "✗ fail", "missing": "✗ missing", "skipped": "– skipped", "pass": "✓ pass"}


@dataclass(frozen=True)
class Cell:
    backend: str
    case: str  # "cpu_quota/cpu period_ms=100 quota=0.5 threads=1", or the bound for a missing case
    check: str  # which bound ("cpu_ratio median ≤ 1.05") or "no failed repetitions"
    outcome: str  # pass | fail | missing | skipped
    message: str
    exception: str = ""  # a pass only because the baseline grants an exception: its reason


def cell(check: Any) -> Cell:
    """A ``harness.validate.Check`` as a grid cell.

    Uses ``backend``/``case``/``check`` attributes when the check has them;
    otherwise reads them from its JUnit class name (``isobench.<backend>.<measurement>``)
    and test name (``"<backend> <case> · <bound>"``).
    """
    name, cls = str(check.name), str(check.classname)
    backend = getattr(check, "backend", None) or cls.split(".", 1)[1].rsplit(".", 1)[0]
    head, _, what = name.partition(" · ")
    case = getattr(check, "case", None) or (head.removeprefix(backend).strip() or what)
    return Cell(str(backend), str(case), what if head.strip() != backend else "case present", str(check.outcome),
                str(check.message), str(getattr(check, "exception", "") or ""))


def grid(cells: Iterable[Cell]) -> tuple[list[str], list[tuple[str, dict[str, list[Cell]]]]]:
    """(backends, [(case, {backend: cells})]) with the rows that failed first."""
    rows: dict[str, dict[str, list[Cell]]] = {}
    backends: set[str] = set()
    for c in cells:
        rows.setdefault(c.case, {}).setdefault(c.backend, []).append(c)
        backends.add(c.backend)

    def worst(cs: Iterable[Cell]) -> int:
        return min((SEVERITY.get(c.outcome, 9) for c in cs), default=9)

    ordered = sorted(rows.items(), key=lambda kv: (worst(c for cs in kv[1].values() for c in cs), kv[0]))
    return sorted(backends, key=style.backend_rank), ordered


def _outcome(cs: Sequence[Cell]) -> str:
    return min((c.outcome for c in cs), key=lambda o: SEVERITY.get(o, 9)) if cs else ""


def _exc(c: Cell) -> str:
    return f" (baseline exception: {c.exception})" if c.exception else ""


def write(checks: Sequence[Any], run_id: str, baseline: str, out: Path, notes: Sequence[str] = (),
          held: Sequence[str] = ()) -> Path:
    """Write ``out``/validate.html and validate.md; returns the HTML path.  ``held``: one line per
    cell of a backend whose limits another enforcer holds (``harness.validate.held``)."""
    cells = [cell(c) for c in checks]
    backends, rows = grid(cells)
    counts = {o: sum(c.outcome == o for c in cells) for o in SEVERITY}
    verdict = "FAILED" if counts["fail"] or counts["missing"] else "passed"
    summary = (f"Gate {verdict}: {len(cells)} checks — {counts['pass']} passed, {counts['fail']} failed, "
               f"{counts['missing']} missing, {counts['skipped']} skipped (baseline {baseline}).")
    title = f"isobench validate — {run_id}"
    e = page_html.e
    body = [f"<h1>{e(title)}</h1>", f'<p class="status{"" if verdict == "passed" else " bad"}"><b>{e(summary)}</b></p>']
    body += [f"<p>{e(n)}</p>" for n in notes]
    bad = [c for c in cells if c.outcome in ("fail", "missing")]
    if bad:
        body.append("<h2>What failed</h2><ul>" + "".join(f"<li>{e(c.message)}</li>" for c in bad) + "</ul>")
    body.append("<h2>Checks by case and backend</h2><table class=\"grid\"><tr><th>case</th>"
                + "".join(f"<th>{e(b)}</th>" for b in backends) + "</tr>")
    md = [f"# {title}", "", f"**{summary}**", "", *[f"{n}" for n in notes], ""]
    if bad:
        md += ["## What failed", "", *[f"- {c.message}" for c in bad], ""]
    md += ["## Checks by case and backend", "", "| case | " + " | ".join(backends) + " |",
           "|---|" + "---|" * len(backends)]
    for case, by_backend in rows:
        tds, mds = [], []
        for b in backends:
            cs = by_backend.get(b, [])
            o = _outcome(cs)
            detail = [c for c in cs if c.outcome != "pass" or c.exception]
            tip = "; ".join(c.message or (f"{c.check}: exception — {c.exception}" if c.exception else c.check)
                            for c in detail)
            n = f" ({sum(c.outcome == 'pass' for c in cs)}/{len(cs)} ok)" if len(cs) > 1 else ""
            tds.append(f'<td class="{o}" title="{e(tip)}">{e(MARK.get(o, ""))}{e(n)}'
                       + "".join(f"<br><small>{e(c.check)}{e(_exc(c))}</small>" for c in detail) + "</td>")
            mds.append(f"{MARK.get(o, '')}{n}" + "".join(f"<br>{c.check}{_exc(c)}" for c in detail))
        body.append(f"<tr><td>{e(case)}</td>{''.join(tds)}</tr>")
        md.append(f"| {case} | " + " | ".join(mds) + " |")
    body.append("</table>")
    if held:
        title_held = "Per cell: did the enforcer hold it (backends whose limits another enforcer holds)"
        body.append(f"<h2>{e(title_held)}</h2><ul>" + "".join(f"<li>{e(h)}</li>" for h in held) + "</ul>")
        md += ["", f"## {title_held}", "", *[f"- {h}" for h in held]]
    body.append("<details><summary>Every check</summary><ul>"
                + "".join(f"<li>{e(MARK.get(c.outcome, c.outcome))} · {e(c.backend)} {e(c.case)} · {e(c.check)}"
                          + (f" — {e(c.message)}" if c.message else "") + "</li>" for c in cells) + "</ul></details>")
    out.mkdir(parents=True, exist_ok=True)
    (out / "validate.md").write_text("\n".join(md) + "\n")
    html = out / "validate.html"
    html.write_text(page_html.page(title, body))
    return html


def default_out(run_dir: Path) -> Path:
    return Path("reports") / f"validate-{run_dir.resolve().name}"
