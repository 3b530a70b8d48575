"""``isobench run SCENARIO``: run a scenario and store its samples."""

from __future__ import annotations

import argparse
from pathlib import Path

import runtimes
from harness.errors import UserError

HELP = "run a scenario and store its samples"
DEFAULT_RESULTS = Path("results")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("scenario", help="scenario file (TOML), e.g. scenarios/default.toml")
    p.add_argument("--backends", help="comma-separated subset of the scenario's backends")
    p.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="results directory (default: results/)")
    p.add_argument("--run-id", help="name of the run directory (default: date-time-random)")
    p.add_argument("--skip-unavailable", action="store_true",
                   help="drop backends that cannot run here instead of failing")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-summary", action="store_true",
                   help="print only the run directory (isobench fleet reads the run on its controller; "
                        "the summary's pandas costs seconds inside an emulated guest)")


def main(args: argparse.Namespace) -> int:
    from harness import runner, scenario, summary

    sc = scenario.load(args.scenario)
    names = [b.strip() for b in args.backends.split(",") if b.strip()] if args.backends else None
    if names:
        unknown = [b for b in names if not runtimes.known(b)]
        if unknown:
            raise UserError(f"--backends: unknown backend {unknown[0]!r} (known: {', '.join(runtimes.names())})")
    progress = False if args.no_progress else None
    run_dir = runner.run(sc, args.results, names, progress, args.skip_unavailable, args.run_id)
    if not args.no_summary:
        summary.print_summary(run_dir)
    print(run_dir)
    return 0
