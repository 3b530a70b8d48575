"""``isobench history add|report|compact``: every run's series over commits, kernels and dates
(``harness.history``).

``add PATH…`` appends runs (a run directory, ``results/``, a matrix or fleet directory: every run
below it) to the history, once each; ``report`` draws a page per metric with the steps found;
``compact`` merges the history's files into one.  Exit 2 with one line on bad input.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.cli import number

HELP = "the history of runs: add runs, report each metric over commits/kernels/dates with its steps"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from harness.history import BYS, DEFAULT, SPLITS, WINDOW
    from harness.stats import ALPHA, THRESHOLD

    p.add_argument("--history", type=Path, default=DEFAULT, metavar="DIR",
                   help=f"the history store (default {DEFAULT})")
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = sub.add_parser("add", help="append runs to the history (each run once; a killed append adds nothing)")
    add.add_argument("paths", nargs="+", type=Path, metavar="PATH",
                     help="run directories, or directories holding runs (results/, matrix-…, fleet-…)")
    rep = sub.add_parser("report", help="a page per metric: its lines over the runs, the steps found")
    rep.add_argument("--metric", action="append", default=[], metavar="NAME",
                     help="a metric to draw (repeatable; default: every headline metric)")
    rep.add_argument("--since", metavar="DATE|COMMIT", help="runs from this date (2026-01-31) or commit on")
    rep.add_argument("--last", type=number(int, 1), metavar="N", help="the last N runs of each line")
    rep.add_argument("--by", choices=BYS, default="commit",
                     help="which neighbouring runs are one group, whose boundaries are tested (default commit)")
    rep.add_argument("--split", choices=SPLITS, default="host",
                     help="what makes a line besides the series: its host and cgroup version (default), "
                          "or also its kernel")
    rep.add_argument("--where", action="append", default=[], metavar="KEY=GLOB",
                     help="keep rows whose KEY matches (repeatable), e.g. backend=container kernel='6.12*'")
    rep.add_argument("--window", type=number(int, 1), default=WINDOW, metavar="RUNS",
                     help=f"runs on each side of a tested boundary (default {WINDOW})")
    rep.add_argument("--alpha", type=number(float, 0, 0.5, above=True), default=ALPHA,
                     help=f"false-alarm rate per line (default {ALPHA})")
    rep.add_argument("--threshold", type=number(float, 0, 10), default=THRESHOLD,
                     help=f"smallest relative change called a step (default {THRESHOLD})")
    rep.add_argument("--out", type=Path, default=Path("reports/history"), metavar="DIR",
                     help="where index.md and a page per metric go (default reports/history)")
    sub.add_parser("compact", help="merge the history's files into one")


def main(args: argparse.Namespace) -> int:
    from harness.errors import UserError
    from harness.history.store import HistoryError
    from harness.results import ResultsError
    from harness.store.segments import StoreError
    from runtimes.userpaths import check_output_dir

    if args.action in ("add", "compact"):  # every directory written is checked before anything is read
        check_output_dir(args.history, "--history")
    else:
        check_output_dir(args.out, "--out")
    try:
        if args.action == "add":
            return _add(args)
        if args.action == "compact":
            return _compact(args)
        return _report(args)
    except (HistoryError, ResultsError, StoreError) as e:
        raise UserError(str(e)) from None
    except OSError as e:
        raise UserError(f"{e.filename or args.history}: {e.strerror or e}") from None


def _add(args: argparse.Namespace) -> int:
    from harness.commands.results import _runs
    from harness.history import store

    runs = _runs(args.paths)
    added = store.add(args.history, runs)
    print(f"isobench history: {added.runs} run(s), {added.rows} series rows added to {args.history}"
          + (f"; {len(added.skipped)} already there" if added.skipped else ""))
    return 0


def _compact(args: argparse.Namespace) -> int:
    from harness.history import store

    files, rows = store.compact(args.history)
    print(f"isobench history: {files} files compacted into one ({rows} rows)" if files
          else "isobench history: nothing to compact")
    return 0


def _report(args: argparse.Namespace) -> int:
    from harness.errors import UserError
    from harness.history import page, store
    from harness.history.lines import Query, lines, parse_where

    df = store.read(args.history)
    if df.empty:
        raise UserError(f"{args.history}: no history yet (isobench history add RUN…)")
    q = Query(tuple(args.metric), args.since, args.last, args.by, args.split, parse_where(args.where),
              args.window, args.alpha, args.threshold)
    found = lines(df, q)
    if not found:
        raise UserError("no rows of " + (", ".join(args.metric) if args.metric else "a headline metric")
                        + " match" + (" --where/--since" if args.where or args.since else ""))
    index = page.write(found, q, args.out, df["run_id"].nunique())
    for ln in found:
        for s in ln.steps:
            r = ln.rows.iloc[s.index]
            print(f"step: {ln.metric} {ln.label}: {s.kind} {s.change:+.1%} from run {r['run_id']} "
                  f"(commit {str(r.get('commit') or '?')[:10]}, kernel {r['kernel']}); adjusted p {s.q:.2g}")
    print(f"isobench history: {len(found)} lines, {sum(len(ln.steps) for ln in found)} steps; {index}")
    return 0
