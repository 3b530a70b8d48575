#!/usr/bin/env python3
"""Side by side: the harness's bare throughput figures and the same tools run by hand.

    python3 tools/crosscheck_throughput.py RUN_DIR [--repeat N] [--tolerance 0.03] [--dir DIR]
    python3 tools/crosscheck_throughput.py --self BENCH [BENCH ...] [--seconds S]
    python3 tools/crosscheck_throughput.py --study BENCH [BENCH ...] [--durations 1,2,4] [--runs 5]

For each benchmark the stored run measured on ``bare`` with one instance (rows of the
``throughput`` measurement, metric ``tp_<bench>``), runs ``tools/crosscheck-throughput.sh``
-- the tool started from a shell with its arguments written out, its plain-text output read
with awk: nothing of the harness -- ``--repeat`` times with the same duration and file size,
and prints both medians and their difference.  Exit status 1 when a benchmark disagrees by
more than the tolerance.  ``--self`` only prints the by-hand figures (no run needed);
``--study`` runs each benchmark ``--runs`` times at each of ``--durations`` (interleaved: run 1
at every duration, then run 2 ...) and prints the median and the coefficient of variation per
duration: how the scenario's ``seconds`` was chosen (docs/throughput.md).
Standard library only, and no harness import: the comparison must not share the code it checks.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

TOOL = Path(__file__).with_name("crosscheck-throughput.sh")
MEASUREMENT, PREFIX = "throughput", "tp_"
#: the benchmarks the shell tool knows
BENCHES = ("cpu", "matrix", "stream", "stream_random", "syscall", "forkexec", "ctxswitch",
           "randread", "randwrite", "seqread", "seqwrite", "tcp_stream", "tcp_rr")


def harness_figures(run_dir: Path) -> dict[str, dict[str, Any]]:
    """bench -> {median, seconds, size_mib, cpus} of the run's bare rows with one instance."""
    values: dict[str, list[float]] = defaultdict(list)
    params: dict[str, dict[str, Any]] = {}
    for line in (run_dir / "samples.jsonl").read_text().splitlines():
        try:
            r = json.loads(line)
        except ValueError:
            continue
        p = r.get("params") or {}
        if (r.get("measurement") != MEASUREMENT or r.get("backend") != "bare" or r.get("status") != "ok"
                or r.get("warmup") or int(p.get("instances", 1)) != 1 or not r["metric"].startswith(PREFIX)):
            continue
        bench = r["metric"].removeprefix(PREFIX)
        if bench not in BENCHES:
            continue
        values[bench].append(float(r["value"]))
        params[bench] = {"seconds": float(p.get("seconds", 5)), "size_mib": float(p.get("size_mib", 128)),
                         "cpus": str(p.get("cpus") or "")}
    return {b: {"median": statistics.median(v), **params[b]} for b, v in values.items()}


def by_hand(bench: str, seconds: int, directory: str, size_mib: int, repeat: int, cpus: str = "") -> float:
    """Median of ``repeat`` runs of the shell tool; RuntimeError with the tool's own words."""
    got = []
    for _ in range(repeat):
        done = subprocess.run(["sh", str(TOOL), bench, str(seconds), directory, str(size_mib), cpus],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError((done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1])
        kv = dict(field.split("=", 1) for field in done.stdout.split())
        got.append(float(kv["value"]))
    return statistics.median(got)


def study(benches: list[str], durations: list[int], runs: int, directory: str) -> int:
    """Median and coefficient of variation of each benchmark by hand, per duration."""
    got: dict[tuple[str, int], list[float]] = defaultdict(list)
    for _ in range(runs):
        for seconds in durations:
            for bench in benches:
                try:
                    got[bench, seconds].append(by_hand(bench, seconds, directory, 128, 1))
                except RuntimeError as e:
                    print(f"crosscheck: {bench} at {seconds} s: {e}", file=sys.stderr)
    print(f"{'benchmark':<14} " + " ".join(f"{f'{s} s: median  cv':>24}" for s in durations))
    for bench in benches:
        cells = []
        for s in durations:
            v = got[bench, s]
            cv = statistics.stdev(v) / statistics.fmean(v) if len(v) > 1 and statistics.fmean(v) else float("nan")
            cells.append(f"{statistics.median(v) if v else float('nan'):>14.5g} {cv:>8.1%}")
        print(f"{bench:<14} " + " ".join(f"{c:>24}" for c in cells))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir", type=Path, nargs="?")
    ap.add_argument("--self", nargs="+", metavar="BENCH", dest="only", help="only run the tool by hand")
    ap.add_argument("--study", nargs="+", metavar="BENCH", help="spread of the tools by hand per duration")
    ap.add_argument("--durations", default="1,2,4", help="with --study: seconds to try, comma-separated")
    ap.add_argument("--runs", type=int, default=5, help="with --study: runs per benchmark and duration")
    ap.add_argument("--repeat", type=int, default=3, help="runs of the tool per benchmark")
    ap.add_argument("--seconds", type=int, default=5, help="duration with --self")
    ap.add_argument("--dir", default="/var/tmp", help="directory of the fio file (a host directory on disk)")
    ap.add_argument("--tolerance", type=float, default=0.03, help="allowed relative difference")
    args = ap.parse_args(argv)
    if args.study:
        return study(args.study, [int(d) for d in args.durations.split(",")], args.runs, args.dir)
    if args.only:
        for bench in args.only:
            try:
                print(f"{bench:<14} {by_hand(bench, args.seconds, args.dir, 128, args.repeat):>14.6g}")
            except RuntimeError as e:
                print(f"crosscheck: {bench}: {e}", file=sys.stderr)
                return 2
        return 0
    if args.run_dir is None:
        ap.error("RUN_DIR or --self is required")
    try:
        figures = harness_figures(args.run_dir)
    except OSError as e:
        print(f"crosscheck: {args.run_dir}: {e.strerror}", file=sys.stderr)
        return 2
    if not figures:
        print(f"crosscheck: {args.run_dir} has no bare single-instance throughput rows", file=sys.stderr)
        return 2
    bad = 0
    print(f"{'benchmark':<14} {'harness':>14} {'by hand':>14} {'diff':>8}  verdict")
    for bench in (b for b in BENCHES if b in figures):
        h = figures[bench]
        try:
            t = by_hand(bench, int(h["seconds"]), args.dir, int(h["size_mib"]), args.repeat, h["cpus"])
        except RuntimeError as e:
            print(f"{bench:<14} {h['median']:>14.6g} {'-':>14} {'':>8}  the tool failed by hand: {e}")
            bad += 1
            continue
        diff = h["median"] / t - 1
        verdict = "agree" if abs(diff) <= args.tolerance else f"DISAGREE (> {args.tolerance:.0%})"
        bad += verdict != "agree"
        print(f"{bench:<14} {h['median']:>14.6g} {t:>14.6g} {diff:>+8.2%}  {verdict}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
