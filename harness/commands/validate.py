"""``isobench validate RUN_DIR --baseline FILE``: the enforcement regression gate (``harness.validate``).

``--update-baseline`` derives a baseline from the run instead; ``--self-test``
checks that the gate passes the run and fails its mutations.  Exit status: 1
when a check failed or is missing, 0 otherwise, 2 with one line on unreadable
input.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.validate import (
    DEFAULT_BASELINE,
    Baseline,
    Case,
    Check,
    cases,
    derive,
    junit,
    load_baseline,
    run_checks,
    write_baseline,
)
from harness.validate.derive import COMMENT
from harness.validate.expr import BaselineError
from harness.validate.held import held
from runtimes.userpaths import PathRefused, check_output_dir, check_output_file

HELP = "check a run's enforcement results against a baseline of bounds (a CI gate; JUnit output)"


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


def _check_outputs(args: argparse.Namespace) -> None:
    """Every file or directory the command would write, before the run is read."""
    from harness.report import validate_page

    if args.update_baseline:
        check_output_file(args.baseline, "--baseline")
        return
    if args.junit:
        check_output_file(args.junit, "--junit")
    if not args.self_test:
        check_output_dir(getattr(args, "out", None) or validate_page.default_out(args.run_dir), "--out")


def main(args: argparse.Namespace) -> int:
    from harness.results import ResultsError, load, read_manifest

    try:
        _check_outputs(args)
    except PathRefused as e:
        print(f"isobench validate: {e}", file=sys.stderr)
        return 2
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
    cells = [h.line() for h in held(checks, run_cases)]
    if cells:
        print("per cell, where another enforcer than the backend's own cgroup holds the limits:")
        print("\n".join(f"  {line}" for line in cells))
    from harness.report import validate_page

    out = getattr(args, "out", None) or validate_page.default_out(args.run_dir)
    try:
        page = validate_page.write(checks, str(manifest.get("run_id", args.run_dir.name)), str(args.baseline), out,
                                   [busy] if busy else [], cells)
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
