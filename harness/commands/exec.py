"""``isobench exec --backend B -- CMD ARGS…``: one command in an environment, output and status passed through."""

from __future__ import annotations

import argparse

import runtimes
from harness.cli import number
from harness.errors import UserError

HELP = "run one command in an environment, passing output and status through"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", default=runtimes.DEFAULT_EXEC,
                   help=f"{', '.join(runtimes.names())} (default: {runtimes.DEFAULT_EXEC})")
    p.add_argument("--cpus", type=number(float, 0, above=True), help="CPU quota in CPUs (e.g. 0.5)")
    p.add_argument("--period-ms", type=number(float, 1, 1000), default=100.0,
                   help="CPU quota period (default 100 ms)")
    p.add_argument("--memory", type=number(int, 4), metavar="MIB", help="memory limit in MiB")
    p.add_argument("--pids", type=number(int, 1), help="pids limit")
    p.add_argument("--timeout", type=number(float, 0, above=True), default=None,
                   help="kill after this many seconds")
    p.add_argument("--seccomp", metavar="PROFILE", default=None,
                   help="container/oci backends: default (Docker's profile), unconfined, or a profile JSON file")
    p.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- CMD ARGS…")


def main(args: argparse.Namespace) -> int:
    from harness import execute

    argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    if not argv:
        raise UserError("exec: no command given (usage: isobench exec --backend B -- CMD ARGS…)")
    return execute.run(args.backend, argv, cpus=args.cpus, period_ms=args.period_ms,
                       memory=args.memory, pids=args.pids, timeout=args.timeout, seccomp=args.seccomp)
