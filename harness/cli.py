"""``isobench`` command line: run, doctor, cleanup, exec, report, compare, validate.

Heavy imports (pandas, matplotlib, libvirt) happen inside the commands, so
``isobench --help`` and bad-input errors stay fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

import runtimes
from harness.errors import UserError

#: commands implemented in their own modules: name -> module with HELP, add_arguments, main
DELEGATED = {
    "report": "harness.report",
    "compare": "harness.compare",
    "validate": "harness.validate",
    "matrix": "harness.matrix.cli",
    "fleet": "harness.commands.fleet",
}
DEFAULT_RESULTS = Path("results")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="isobench",
        description="Startup latency, memory overhead and cgroup-enforcement accuracy of "
                    "bare metal, containers and VMs, side by side.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    r = sub.add_parser("run", help="run a scenario and store its samples")
    r.add_argument("scenario", help="scenario file (TOML), e.g. scenarios/default.toml")
    r.add_argument("--backends", help="comma-separated subset of the scenario's backends")
    r.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="results directory (default: results/)")
    r.add_argument("--run-id", help="name of the run directory (default: date-time-random)")
    r.add_argument("--skip-unavailable", action="store_true",
                   help="drop backends that cannot run here instead of failing")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    r.set_defaults(func=cmd_run)

    d = sub.add_parser("doctor", help="check (and with --fix, prepare) this host")
    d.add_argument("--fix", action="store_true", help="install missing packages and start daemons")
    d.add_argument("--no-probe", action="store_true", help="skip the KVM boot probe")
    d.add_argument("--backends", help="comma-separated: prepare and check only these backends (default: all)")
    d.set_defaults(func=cmd_doctor)

    c = sub.add_parser("cleanup", help="remove what crashed runs left (cgroups, processes, mounts, domains)")
    c.add_argument("--run-id", help="only what this run left")
    c.set_defaults(func=cmd_cleanup)

    e = sub.add_parser("exec", help="run one command in an environment, passing output and status through")
    e.add_argument("--backend", default=runtimes.DEFAULT_EXEC,
                   help=f"{', '.join(runtimes.names())} (default: {runtimes.DEFAULT_EXEC})")
    e.add_argument("--cpus", type=float, help="CPU quota in CPUs (e.g. 0.5)")
    e.add_argument("--period-ms", type=float, default=100.0, help="CPU quota period (default 100 ms)")
    e.add_argument("--memory", type=int, metavar="MIB", help="memory limit in MiB")
    e.add_argument("--pids", type=int, help="pids limit")
    e.add_argument("--timeout", type=float, default=None, help="kill after this many seconds")
    e.add_argument("--seccomp", metavar="PROFILE", default=None,
                   help="container/oci backends: default (Docker's profile), unconfined, or a profile JSON file")
    e.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- CMD ARGS…")
    e.set_defaults(func=cmd_exec)

    for name, module in DELEGATED.items():
        try:
            mod = importlib.import_module(module)
        except ImportError:  # an optional dependency missing must not break the other commands
            continue
        sp = sub.add_parser(name, help=mod.HELP)
        mod.add_arguments(sp)
        sp.set_defaults(func=mod.main)
    return p


def cmd_run(args: argparse.Namespace) -> int:
    from harness import runner, scenario, summary

    sc = scenario.load(args.scenario)
    names = [b.strip() for b in args.backends.split(",") if b.strip()] if args.backends else None
    if names:
        unknown = [b for b in names if not runtimes.known(b)]
        if unknown:
            raise UserError(f"--backends: unknown backend {unknown[0]!r} (known: {', '.join(runtimes.names())})")
    progress = False if args.no_progress else None
    run_dir = runner.run(sc, args.results, names, progress, args.skip_unavailable, args.run_id)
    summary.print_summary(run_dir)
    print(run_dir)
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from harness import doctor

    names = [b.strip() for b in args.backends.split(",") if b.strip()] if args.backends else None
    unknown = [b for b in names or () if not runtimes.known(b)]
    if unknown:
        raise UserError(f"--backends: unknown backend {unknown[0]!r} (known: {', '.join(runtimes.names())})")
    return doctor.main(fix=args.fix, probe=not args.no_probe, backends=names)


def cmd_cleanup(args: argparse.Namespace) -> int:
    from harness import cleanup

    removed = cleanup.cleanup(args.run_id)
    for line in removed:
        print(f"removed {line}")
    print(f"isobench cleanup: removed {len(removed)} item(s)")
    return 0


def cmd_exec(args: argparse.Namespace) -> int:
    from harness import execute

    argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    if not argv:
        raise UserError("exec: no command given (usage: isobench exec --backend B -- CMD ARGS…)")
    return execute.run(args.backend, argv, cpus=args.cpus, period_ms=args.period_ms,
                       memory=args.memory, pids=args.pids, timeout=args.timeout, seccomp=args.seccomp)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from harness.scenario import ScenarioError
    from runtimes.base import BackendError
    from runtimes.cgroups import CgroupError

    try:
        return int(args.func(args) or 0)
    except (UserError, ScenarioError, CgroupError) as e:
        print(f"isobench: error: {e}", file=sys.stderr)
        return 2
    except BackendError as e:
        print(f"isobench: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("isobench: interrupted", file=sys.stderr)
        return 130
