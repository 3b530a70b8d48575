"""``isobench run SCENARIO``: run a scenario and store its samples."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import runtimes
from harness.errors import UserError
from runtimes.naming import check_run_id
from runtimes.userpaths import check_output_dir

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


def targets(args: argparse.Namespace) -> list[str] | None:
    """Where the run goes and what it runs, checked before any backend starts (a zygote, a cgroup,
    a guest): the results directory can be written, the run id is a free name, the backends exist."""
    check_output_dir(args.results, "--results")
    if args.run_id is not None and os.path.lexists(args.results / check_run_id(args.run_id)):
        raise UserError(f"--run-id {args.run_id}: {args.results / args.run_id} exists already (choose another id)")
    names = [b.strip() for b in args.backends.split(",") if b.strip()] if args.backends is not None else None
    if names is not None and not names:
        raise UserError(f"--backends {args.backends!r}: names no backend")
    if names:
        unknown = [b for b in names if not runtimes.known(b)]
        if unknown:
            raise UserError(f"--backends: unknown backend {unknown[0]!r} (known: {', '.join(runtimes.names())})")
    return names


def main(args: argparse.Namespace) -> int:
    from harness import runner, scenario, summary
    from harness.results import ResultsError

    sc = scenario.load(args.scenario)
    names = targets(args)
    progress = False if args.no_progress else None
    try:
        run_dir = runner.run(sc, args.results, names, progress, args.skip_unavailable, args.run_id)
    except ResultsError as e:  # a full disk: what was written is kept, the run ends here
        print(f"isobench: error: {e}", file=sys.stderr)
        return 1
    if not args.no_summary:
        summary.print_summary(run_dir)
    print(run_dir)
    return 0
