"""``isobench validate RUN_DIR --baseline FILE``: the enforcement regression gate.

A baseline is a TOML list of bounds, each keyed by backend (``"*"`` = every
backend of the run), measurement and case params::

    [baseline]
    optional_backends = ['vm']     # no rows for these is "skipped", not "missing"

    [[bound]]
    backend = "*"                  # a named backend's bound replaces "*" for that backend
    measurement = "cpu_quota"
    metric = "cpu_ratio"
    params = { threads = 1 }       # optional: cases whose params include these values
    when = "quota < threads"       # optional: a condition on the case params
    require = "nr_throttled >= 0.8 * nr_periods"   # optional: a precondition on the case's
                                   # measured medians (and params); false = skipped, with why
    stat = "median"                # median (default) | mean | min | max | all (every sample)
    min = 0.95                     # numbers, or expressions over the params: max = "limit"
    max = 1.05                     # equals = 1 is short for min = max = 1
    optional = false               # true: matching no case is "skipped", not "missing"
    exception = false              # true: a reasoned departure from the general bound (why = the reason)
    why = "CFS bandwidth control delivers the quota within 5 %"

Every (bound, backend, case) pair is one check and one JUnit testcase.  A
bound that matches no case of a backend of the run is **missing**, which fails
like a violation (the gate must not pass because a measurement did not run).
Failed repetitions in a checked case are a failure of their own.  A case
whose ``require`` is false is **skipped** with the values that made it so:
e.g. a CPU quota cannot be judged on under-delivery when a busy host never
let the workload reach it (the cgroup was rarely throttled).

``--update-baseline`` writes a baseline derived from the run instead (see
``derive``): per backend and case, bands around what was observed.
``--self-test`` checks the run untouched and mutated (see ``selftest``): the
gate must pass the first and fail every mutation, naming the mutated cell.

The package: ``expr`` (the expression language), ``baseline`` (the file),
``checks`` (judging a run), ``junit``, ``derive``, ``selftest``; this module
is the command line.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.validate.baseline import Baseline, Bound, load_baseline, parse_baseline, write_baseline
from harness.validate.checks import ENFORCEMENT, Case, Check, cases, check_case, run_checks
from harness.validate.derive import COMMENT, derive
from harness.validate.expr import BaselineError, Expr
from harness.validate.junit import junit

__all__ = ["ENFORCEMENT", "Baseline", "BaselineError", "Bound", "Case", "Check", "Expr", "cases", "check_case",
           "derive", "junit", "load_baseline", "parse_baseline", "run_checks", "write_baseline"]

HELP = "check a run's enforcement results against a baseline of bounds (a CI gate; JUnit output)"
#: the shipped baseline, relative to a checkout (where nox and CI run)
DEFAULT_BASELINE = Path("baselines/enforcement.toml")


def _load_note(manifest: Mapping[str, Any]) -> str | None:
    """A warning when the host was busy as the run started: CPU delivery then reflects contention."""
    host = manifest.get("host") or {}
    load, cores = host.get("loadavg"), host.get("cores")
    try:
        one = float(load[0] if isinstance(load, (list, tuple)) else load)  # type: ignore[arg-type]
        n = int(cores)  # type: ignore[arg-type]  # None and junk end in the except below
    except (TypeError, ValueError, IndexError):
        return None
    if one <= 0.5 * n:
        return None
    return (f"note: the host's load average was {one:.2f} on {n} cores when the run started; CPU results "
            f"reflect that contention (checks that require throttling are skipped where it starved the workload)")


# -- command line ---------------------------------------------------------------------------
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="the run directory to check")
    p.add_argument("--baseline", type=Path, default=DEFAULT_BASELINE, metavar="FILE",
                   help=f"bounds file (default: {DEFAULT_BASELINE})")
    p.add_argument("--junit", type=Path, metavar="FILE", help="write one JUnit testcase per check to FILE")
    p.add_argument("--out", type=Path, metavar="DIR",
                   help="where validate.html/validate.md go (default: reports/validate-<run-id>)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--update-baseline", action="store_true",
                      help="write a baseline derived from this run to --baseline instead of checking")
    mode.add_argument("--self-test", action="store_true",
                      help="check the run untouched (must pass) and mutated as regressions would show "
                           "(quota ignored, 3 %% under-/over-delivery, no OOM kill, one fork too many, a "
                           "missing counter: each must fail)")


def _update(args: argparse.Namespace, manifest: Mapping[str, Any], run_cases: list[Case]) -> int:
    old = load_baseline(args.baseline) if args.baseline.exists() else None
    optional = sorted(old.optional_backends) if old else []
    bounds, warnings = derive(run_cases, optional)
    if not bounds:
        print(f"isobench validate: {args.run_dir} has no enforcement rows to derive a baseline from", file=sys.stderr)
        return 2
    for w in warnings:
        print(f"warning: {w}")
    head = {"description": old.description if old else "", "derived_from": str(manifest.get("run_id", "")),
            "optional_backends": optional}
    write_baseline(args.baseline, bounds, head, COMMENT)
    print(f"wrote {len(bounds)} bounds derived from {args.run_dir} to {args.baseline}")
    return 0


def _self_test(baseline: Baseline, manifest: Mapping[str, Any], run_cases: list[Case], backends: list[str]) -> int:
    from harness.validate.selftest import report, self_test

    cores = int((manifest.get("host") or {}).get("cores") or os.cpu_count() or 1)
    clean, verdicts = self_test(baseline, run_cases, backends, cores)
    lines, ok = report(clean, verdicts)
    print("\n".join(lines))
    print(f"self-test: {'passed' if ok else 'FAILED'} ({baseline.path})")
    return 0 if ok else 1


def _print(checks: list[Check], baseline: Path) -> tuple[int, int]:
    for c in checks:
        if c.outcome != "pass":
            print(f"{'FAIL' if c.outcome == 'fail' else c.outcome.upper()} {c.message}")
    applied: dict[str, int] = {}
    for c in checks:
        if c.exception:
            applied[c.exception] = applied.get(c.exception, 0) + 1
    for why, n in applied.items():
        print(f"EXCEPTION ({n} check{'s' if n > 1 else ''} judged by a reasoned exception of the baseline): {why}")
    failed = sum(c.outcome == "fail" for c in checks)
    missing = sum(c.outcome == "missing" for c in checks)
    skipped = sum(c.outcome == "skipped" for c in checks)
    print(f"validate: {len(checks)} checks, {len(checks) - failed - missing - skipped} passed, {failed} failed, "
          f"{missing} missing, {skipped} skipped ({baseline})")
    return failed, missing


def main(args: argparse.Namespace) -> int:
    from harness.results import ResultsError, load, read_manifest

    try:
        manifest = read_manifest(args.run_dir)
        run_cases = cases(load(args.run_dir))
        if args.update_baseline:
            return _update(args, manifest, run_cases)
        baseline = load_baseline(args.baseline)
        backends = list(manifest.get("backends") or {}) or sorted({c.backend for c in run_cases})
        if args.self_test:
            return _self_test(baseline, manifest, run_cases, backends)
        checks = run_checks(baseline, run_cases, backends)
    except (ResultsError, BaselineError, OSError) as e:
        print(f"isobench validate: {e}", file=sys.stderr)
        return 2
    if manifest.get("status") != "completed":
        print(f"note: run {manifest.get('run_id')} is {manifest.get('status')}")
    busy = _load_note(manifest)
    if busy:
        print(busy)
    failed, missing = _print(checks, args.baseline)
    from harness.report import validate_page

    out = getattr(args, "out", None) or validate_page.default_out(args.run_dir)
    try:
        page = validate_page.write(checks, str(manifest.get("run_id", args.run_dir.name)), str(args.baseline), out,
                                   [busy] if busy else [])
        print(f"validate: page {page}")
    except OSError as e:
        print(f"isobench validate: cannot write the page under {out}: {e.strerror}", file=sys.stderr)
        return 2
    if args.junit:
        try:
            args.junit.parent.mkdir(parents=True, exist_ok=True)
            junit(checks).write(args.junit, encoding="utf-8", xml_declaration=True)
        except OSError as e:
            print(f"isobench validate: cannot write {args.junit}: {e.strerror}", file=sys.stderr)
            return 2
    return 1 if failed or missing else 0
