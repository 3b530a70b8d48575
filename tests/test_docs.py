"""The documentation, checked: a short README, links that resolve, and stored runs that are cited.

Every figure in README or docs names the stored run that contains it, so a run the pages name must
exist, a run kept under ``docs/runs/`` must be listed by a page (the index in docs/figures.md), and
a fixture under ``tests/data/runs/`` must be read by a test.  Pure text: nothing is imported.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
STORED = ROOT / "docs" / "runs"
FIXTURES = Path(__file__).parent / "data" / "runs"
#: a newcomer's page: what it is, the two commands, the command line, backends, where to read on
README_MAX_LINES = 150

LINK = re.compile(r"\]\(([^)\s]+)\)")
CITED_RUN = re.compile(r"docs/runs/([\w.-]+)")


def _anchors(page: Path) -> set[str]:
    """The heading anchors a Markdown renderer gives ``page`` (lower case, punctuation dropped)."""
    heads = re.findall(r"^#+ (.+)$", page.read_text(), flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in heads}


def _broken_links(page: Path) -> list[str]:
    broken = []
    for target in LINK.findall(page.read_text()):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path) if path else page
        if not dest.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(f"{target} (no such heading)")
    return broken


def test_the_readme_is_a_newcomers_page() -> None:
    lines = README.read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move detail into docs/"
    for command in ("./nox -s bench", "./nox -s tests"):
        assert command in README.read_text()


def test_every_relative_link_in_readme_and_docs_resolves() -> None:
    broken = {p.relative_to(ROOT).as_posix(): b for p in PAGES if (b := _broken_links(p))}
    assert not broken, broken


def test_the_anchor_rule_matches_a_heading_with_code_and_punctuation(tmp_path: Path) -> None:
    page = tmp_path / "p.md"
    page.write_text("# Title\n\n## Run-to-run variation (`compare --calibrate`)\n\n[x](#nowhere)\n")
    assert "run-to-run-variation-compare---calibrate" in _anchors(page)
    assert _broken_links(page) == ["#nowhere (no such heading)"]


def test_every_run_the_pages_name_is_stored() -> None:
    text = "\n".join(p.read_text() for p in PAGES)
    missing = sorted({r for r in CITED_RUN.findall(text) if not (STORED / r.rstrip(".")).exists()})
    assert not missing, f"named in README/docs but not under docs/runs/: {missing}"


def test_every_stored_run_is_named_by_a_page() -> None:
    text = "\n".join(p.read_text() for p in PAGES)
    uncited = sorted(p.name for p in STORED.iterdir() if p.name not in text)
    assert not uncited, f"under docs/runs/ but named by no page (drop it, or list it in docs/figures.md): {uncited}"


def test_every_fixture_run_is_read_by_a_test() -> None:
    tests = "\n".join(p.read_text() for p in Path(__file__).parent.glob("*.py"))
    unused = sorted(p.name for p in FIXTURES.iterdir() if p.name not in tests)
    assert not unused, f"under tests/data/runs/ but read by no test: {unused}"
