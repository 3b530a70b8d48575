"""The report tables and the terminal summary of two stored runs, as text.

``tests/test_golden.py`` compares them with the copies under ``tests/golden/``, stored
before the backend/metric registries replaced the hand-kept tables: the refactor must
not change a single cell.  After an intended change of the tables, regenerate with
``python -m tests.golden_tables`` and review the diff.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: each stored run and where it lives: docs/runs/ holds the runs the documentation cites,
#: tests/data/runs/ those only tests read
RUN_DIRS = {"dev-host-default": ROOT / "tests" / "data" / "runs" / "dev-host-default",
            "dev-host-peers": ROOT / "docs" / "runs" / "dev-host-peers"}
RUNS = tuple(RUN_DIRS)
GOLDEN = Path(__file__).resolve().parent / "golden"


def render(run: str) -> dict[str, str]:
    """file name -> text: every table of the run's report, and the run's terminal summary."""
    from tabulate import tabulate

    from harness import summary
    from harness.report import build

    with tempfile.TemporaryDirectory() as tmp:
        out = build([RUN_DIRS[run]], Path(tmp) / "report")
        files = {p.name: p.read_text() for p in sorted((out / "tables").iterdir())}
    header, rows = summary.table(RUN_DIRS[run])
    files["terminal-summary.txt"] = tabulate(rows, headers=header, tablefmt="simple", disable_numparse=True) + "\n"
    return files


def main() -> int:
    for run in RUNS:
        d = GOLDEN / run
        d.mkdir(parents=True, exist_ok=True)
        for stale in d.iterdir():
            stale.unlink()
        for name, text in render(run).items():
            (d / name).write_text(text)
        print(f"wrote {d}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
