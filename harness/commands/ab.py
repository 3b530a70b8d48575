"""``isobench ab SCENARIO --a … --b … --runs K``: an interleaved A/B session and its verdicts.

Runs the scenario's two variants alternately on this host (A B B A …, K runs a side), then
compares the paired runs series by series (``harness.compare``, paired): Student's t on the
pairs' differences of run medians, with the variance those pairs show (and what the other
series lend), so that drift cancels and run-to-run variation counts.  Prints the verdict
table and a planning line ("to see 10 % here, take K ≥ …").

Exit status: 1 only when something regressed (B worse than A), 0 otherwise, 2 with one line
on bad input or a run that failed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from harness.cli import number
from harness.commands import compare as compare_command
from harness.commands.run import DEFAULT_RESULTS
from harness.errors import UserError
from harness.stats import BOOTSTRAPS
from runtimes.userpaths import PathRefused, check_output_dir

if TYPE_CHECKING:  # pragma: no cover
    from harness.ab.session import Session

HELP = "interleaved A/B session: run two variants alternately (A B B A …) and compare the paired runs"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("scenario", nargs="?", help="scenario file (TOML), e.g. scenarios/startup.toml")
    p.add_argument("--a", action="append", default=[], metavar="KEY=VALUE",
                   help="variant A: a scenario key to set (backend.container.seccomp=unconfined, "
                        "scenario.repetitions=10), or commit=REV; repeatable (default: the scenario as it is)")
    p.add_argument("--b", action="append", default=[], metavar="KEY=VALUE", help="variant B, as --a")
    p.add_argument("--runs", type=int, default=4, metavar="K", help="runs a side (default 4; at least 2)")
    p.add_argument("--backends", help="comma-separated subset of the scenario's backends")
    p.add_argument("--results", type=Path, default=DEFAULT_RESULTS,
                   help="where the session directory goes (default: results/)")
    p.add_argument("--reuse", type=Path, metavar="SESSION",
                   help="compare the runs of a session already made instead of running (its directory)")
    compare_command.add_common(p)
    p.add_argument("--bootstraps", type=number(int, 1), default=BOOTSTRAPS, metavar="N", help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, metavar="DIR", help="where compare.html/compare.md go (default: the session)")


def _session(args: argparse.Namespace) -> Session:
    from harness.ab import session, variants

    try:  # every directory it writes, before anything runs (the session's, the comparison's)
        if args.out is not None:
            check_output_dir(args.out, "--out")
        if args.reuse is None:
            check_output_dir(args.results, "--results")
    except PathRefused as e:
        raise UserError(str(e)) from None
    if args.reuse is not None:
        return session.existing(args.reuse)
    if args.runs < 2:
        raise UserError("--runs must be at least 2 (one pair tells nothing of how runs vary)")
    if not args.scenario or not Path(args.scenario).is_file():
        raise UserError(f"{args.scenario}: no such scenario file")
    a, b = variants.parse("A", args.a), variants.parse("B", args.b)
    from harness import scenario

    for v in (a, b):  # both variants must be valid scenarios before the first run starts
        try:
            scenario.parse(variants.scenario_data(Path(args.scenario).read_text(), v), f"{args.scenario} ({v.label})")
        except scenario.ScenarioError as e:
            raise UserError(f"--{v.label.lower()}: {e}") from None
    s = session.Session(Path(args.scenario), a, b, args.runs, args.results, args.backends)
    return session.run(s, lambda line: print(line, file=sys.stderr, flush=True))


def main(args: argparse.Namespace) -> int:
    from harness.ab.inject import applied
    from harness.compare import comparison, wanted
    from harness.results import ResultsError, load

    if not 0 <= args.threshold < 10 or not 0 < args.alpha < 0.5:
        return compare_command.fail("--threshold must be in [0, 10) and --alpha in (0, 0.5)", "ab")
    try:
        injected = compare_command.injections(args.inject)
        s = _session(args)
        a = [load(d, warmups=False, columns=wanted) for d in s.run_dirs["A"]]
        b = applied([load(d, warmups=False, columns=wanted) for d in s.run_dirs["B"]], injected)
    except (UserError, ResultsError, OSError) as e:
        return compare_command.fail(str(e), "ab")
    c = comparison(a, b, args.threshold, args.alpha, correction=args.correction, bootstraps=max(99, args.bootstraps),
                   paired=True)
    args.runs = [f"A ({s.a.text()}, {s.runs} runs)", f"B ({s.b.text()}, {s.runs} runs)"] if args.reuse is None \
        else [f"A of {s.session_id}", f"B of {s.session_id}"]
    args.out = args.out or s.dir / "compare"
    notes = [f"isobench ab session {s.dir}: order {' '.join(f'{x}{j + 1}' for j, x in _order(s.runs))}"]
    code = compare_command.report(args, c, notes, injected, None, None, paired=True)
    s.write_record(inject=[i.text() for i in injected], exit=code,
                   verdicts={v: sum(r.verdict == v for r in c.rows) for v in {r.verdict for r in c.rows}},
                   regressions=[f"{r.series.label()} {r.series.measurement}/{r.series.workload} {r.series.metric}"
                                for r in c.rows if r.verdict == "regression"])
    return code


def _order(k: int) -> list[tuple[int, str]]:
    from harness.ab.session import order

    return order(k)
