"""``isobench report RUN_DIR… [--out DIR] [--card] [--by …]``: the report of stored runs (``harness.report``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.errors import UserError
from runtimes.userpaths import check_output_dir

#: what marks a directory as a report (one of them is enough)
REPORT_FILES = ("report.html", "report.md", "card.png", "card.svg")
HELP = "build tables, charts and an HTML/Markdown report from one or more run directories"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", type=Path,
                   help="run directories (results/<run-id>); several are merged into one comparison")
    p.add_argument("--out", type=Path, default=None,
                   help="report directory (default: reports/<run-id>, or reports/compare-<ids> for several runs)")
    p.add_argument("--card", action="store_true",
                   help="write only card.png/card.svg: the headline chart with host, kernel, cgroup version, "
                        "accelerator and commit, 1600x900 for a slide")
    p.add_argument("--by", choices=("auto", "cell", "host", "kernel", "run", "none"), default="auto",
                   help="how to tell series of several runs apart (default auto: by kernel × cgroup cell for "
                        "isobench matrix runs, else by host if hosts differ, "
                        "else by kernel if kernels differ, else merged)")


def _check_out(args: argparse.Namespace) -> None:
    """The report directory, before any run is read: one that can be written, and -- since a
    rebuild clears its charts and tables -- new, empty or an earlier report, never any directory."""
    from harness.report import OWNED, default_out

    out = Path(args.out) if args.out is not None else default_out(args.run_dirs)
    check_output_dir(out, "--out")
    if out.is_dir() and any(out.iterdir()) and not any((out / f).exists() for f in REPORT_FILES):
        raise UserError(f"--out {out}: a directory that holds no report (a rebuild clears its "
                        f"{' and '.join(OWNED)}): give a new or empty directory")


def main(args: argparse.Namespace) -> int:
    from harness import report
    from harness.results import ResultsError

    _check_out(args)
    try:
        if getattr(args, "card", False):
            return _card(args)
        out = report.build(args.run_dirs, args.out, by=getattr(args, "by", "auto"))
    except (ResultsError, ValueError, OSError) as e:
        print(f"isobench report: {e}", file=sys.stderr)
        return 2
    print(f"report: {out / 'report.html'}")
    print(f"        {out / 'report.md'}")
    return 0


def _card(args: argparse.Namespace) -> int:
    from harness.report import card, default_out, model

    data = model.load(args.run_dirs, by=getattr(args, "by", "auto"))
    paths = card.build(data, Path(args.out) if args.out is not None else default_out(args.run_dirs))
    if paths is None:
        print("isobench report: no card: it needs two backends in the run (ratios to the first)",
              file=sys.stderr)
        return 2
    for p in paths:
        print(f"card: {p}")
    return 0
