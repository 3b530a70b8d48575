"""``isobench matrix SCENARIO --kernels 6.1,6.12 --cgroups v1,v2``: one guest per cell.

Every kernel is resolved (and fetched) first, so a bad name fails with one
line before anything boots.  Cells run one at a time unless ``--jobs``
(timing figures from parallel guests disturb each other); each prints a
progress line; the last line printed is the matrix directory, which holds one
run directory per cell, ``matrix.json`` (every cell's status and reason) and
each guest's console log.  Exit 0 when every cell completed, 1 otherwise,
130 on Ctrl-C (the running guests are killed, finished cells are kept).
"""

from __future__ import annotations

import argparse
import datetime as dt
import secrets
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from harness.cli import number
from harness.errors import UserError
from runtimes.userpaths import check_output_dir

HELP = "run a scenario inside guests: one per kernel × cgroup version (virtme-ng)"
DEFAULT_TIMEOUT_S = 3600.0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("scenario", type=Path, help="scenario file (TOML), e.g. scenarios/validate.toml")
    p.add_argument("--kernels", default="6.1,6.12",
                   help="comma-separated: Debian series[-rt|-cloud] (6.1, 6.12, 6.12-rt) or bzImage paths")
    p.add_argument("--cgroups", default="v1,v2", help="comma-separated cgroup modes: v1, v2 (default both)")
    p.add_argument("--backends", help="comma-separated subset of the scenario's backends (run inside the guest)")
    p.add_argument("--results", type=Path, default=Path("results"), help="where the matrix directory goes")
    p.add_argument("--jobs", type=number(int, 1), default=1, help="cells at once (default 1: timing)")
    p.add_argument("--cpus", type=number(int, 1), default=2, help="vCPUs per guest (default 2)")
    p.add_argument("--memory", type=number(int, 64), default=2048, metavar="MIB", help="guest memory (default 2048)")
    p.add_argument("--timeout", type=number(float, 0, above=True), default=DEFAULT_TIMEOUT_S,
                   help="seconds per cell before it is killed")
    p.add_argument("--report", action="store_true", help="build the merged report when done")


def _split(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def main(args: argparse.Namespace) -> int:
    from harness import metadata, scenario
    from harness.matrix import accel, cells, guest, kernels, modes

    modes_ = _split(args.cgroups)
    bad = [m for m in modes_ if m not in modes.MODES]
    if bad or not modes_:
        raise UserError(f"--cgroups: unknown mode {bad[0] if bad else '(none)'!r} (known: v1, v2)")
    if args.jobs < 1:
        raise UserError("--jobs: at least 1")
    scenario.load(args.scenario)  # a malformed scenario fails here, before anything boots
    check_output_dir(args.results, "--results")  # and an unwritable results directory, before a kernel is fetched
    backends = _split(args.backends) if args.backends is not None else None
    if backends is not None and not backends:
        raise UserError(f"--backends {args.backends!r}: names no backend")
    if not _split(args.kernels):
        raise UserError(f"--kernels {args.kernels!r}: names no kernel")
    if backends:
        from runtimes import names as known

        unknown = [b for b in backends if b not in known()]
        if unknown:
            raise UserError(f"--backends: unknown backend {unknown[0]!r} (known: {', '.join(known())})")
    if guest.vng_binary() is None:
        raise UserError("matrix: vng is not installed (pip install virtme-ng)")
    ks = kernels.resolve_all(_split(args.kernels))
    matrix_id = f"{dt.datetime.now():%Y%m%d-%H%M%S}-matrix-{secrets.token_hex(2)}"
    out = (args.results / matrix_id).resolve()
    out.mkdir(parents=True)
    specs = []
    for k in ks:
        v = accel.verdict(k.image)
        print(f"matrix: kernel {k.label} ({k.release}, {k.source}): {v.accel} — {v.reason}", flush=True)
        specs += [cells.CellSpec(k, m, v.accel, v.reason, args.cpus, args.memory) for m in modes_]
    host_meta = metadata.collect()
    meta = {"matrix_id": matrix_id, "scenario": str(args.scenario), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "kernels": [k.label for k in ks], "cgroups": modes_, "backends": backends}
    done: list[cells.CellResult] = []

    def one(i: int, spec: cells.CellSpec) -> cells.CellResult:
        print(f"[{i}/{len(specs)}] {spec.name}: booting ({spec.accel})…", flush=True)
        r = cells.run_cell(spec, args.scenario, out, matrix_id, backends, args.timeout, host_meta)
        samples = ", ".join(f"{n} {k}" for k, n in r.samples.items()) or "no samples"
        print(f"[{i}/{len(specs)}] {spec.name}: {r.status} in {r.seconds:.0f} s ({samples})"
              + (f" — {r.reason}" if r.reason else ""), flush=True)
        done.append(r)
        cells.write_summary(out, done, meta)
        return r

    try:
        if args.jobs == 1:  # in this thread: Ctrl-C lands in the running guest's wait
            for i, s in enumerate(specs, 1):
                one(i, s)
        else:
            _parallel(one, specs, args.jobs)
    except KeyboardInterrupt as e:
        if isinstance(e, cells.CellInterrupted):
            done.append(e.result)
        print("matrix: interrupted; finished cells are kept", file=sys.stderr)
        cells.write_summary(out, done, {**meta, "status": "interrupted"})
        print(out)
        return 130
    cells.write_summary(out, done, {**meta, "status": "completed", "ended": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    _pages(out, done, args.report)
    print(out)
    return 0 if all(r.status == "completed" for r in done) else 1


def _parallel(one: Callable[[int, Any], Any], specs: list[Any], jobs: int) -> None:
    from harness.matrix import guest

    pool = ThreadPoolExecutor(max_workers=jobs)
    futures = [pool.submit(one, i, s) for i, s in enumerate(specs, 1)]
    try:
        for f in futures:
            f.result()
    except KeyboardInterrupt:
        for f in futures:
            f.cancel()
        guest.kill_all()
        raise
    finally:
        pool.shutdown(wait=True)


def _pages(out: Path, done: list[Any], full_report: bool) -> None:
    """matrix.md (cells, enforcement per cell, CPU chart); with --report the merged report too."""
    from harness.matrix import summary

    print(f"matrix: summary {summary.write(out)}", flush=True)
    run_dirs = [out / r.run_dir for r in done if r.run_dir]
    if full_report and run_dirs:
        from harness import report

        print(f"matrix: report {report.build(run_dirs, out / 'report')}", flush=True)
