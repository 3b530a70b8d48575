#!/usr/bin/env python3
"""Side by side: the harness's cpu_ratio and an independent measurement of the same cell.

    python3 tools/crosscheck_cpu.py RUN_DIR [--all] [--repeat N] [--tolerance 0.01]

For the quota-limited cpu_quota cells of a stored run (quota < threads), runs
``tools/crosscheck-cpu.sh`` (a hand-made cgroup, stress-ng, the kernel's
counters: nothing of the harness) on the same quota, period and thread count
and prints both ratios.  By default one cell per backend; ``--all`` every
quota-limited cell.  Exit status 1 when a comparable cell disagrees by more
than the tolerance.  Standard library only, and no harness import: the
comparison must not share the code it checks.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

TOOL = Path(__file__).with_name("crosscheck-cpu.sh")
#: below this share of throttled periods the host, not the quota, limited the workload: the two
#: measurements then measure contention at different moments and are not comparable
THROTTLED = 0.8


Cell = tuple[str, float, float, int, int]  # backend, quota, period_ms, threads, weight (0: default)


def harness_cells(run_dir: Path) -> dict[Cell, dict[str, float]]:
    """(backend, quota, period_ms, threads, weight) -> median cpu_ratio and throttled_share of the run."""
    values: dict[Cell, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for line in (run_dir / "samples.jsonl").read_text().splitlines():
        try:
            r = json.loads(line)
        except ValueError:
            continue
        if r.get("measurement") != "cpu_quota" or r.get("status") != "ok" or r.get("warmup"):
            continue
        p = r.get("params") or {}
        if "quota" not in p or p.get("quota", 0) >= p.get("threads", 0):
            continue
        key = (r["backend"], float(p["quota"]), float(p.get("period_ms", 100)), int(p["threads"]),
               int(p.get("weight", 0)))
        values[key][r["metric"]].append(float(r["value"]))
    return {k: {m: statistics.median(v) for m, v in ms.items()} for k, ms in values.items() if ms.get("cpu_ratio")}


def independent(quota: float, period_ms: float, threads: int, weight: int, seconds: int,
                repeat: int) -> dict[str, float]:
    """Median ratio (and throttled share) of ``repeat`` runs of the shell tool; RuntimeError with
    the tool's own words when it cannot measure here."""
    ratios, shares = [], []
    for _ in range(repeat):
        argv = ["sh", str(TOOL), f"{quota:g}", f"{period_ms:g}", str(threads), str(seconds)]
        done = subprocess.run(argv + ([str(weight)] if weight else []), capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError((done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1])
        kv = dict(field.split("=", 1) for field in done.stdout.split())
        ratios.append(float(kv["ratio"]))
        shares.append(int(kv["throttled"]) / max(1, int(kv["periods"])))
    return {"cpu_ratio": statistics.median(ratios), "throttled_share": statistics.median(shares)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--all", action="store_true", help="every quota-limited cell (default: one per backend)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of the independent tool per cell")
    ap.add_argument("--seconds", type=int, default=6, help="window of the independent tool")
    ap.add_argument("--tolerance", type=float, default=0.01, help="allowed relative difference")
    args = ap.parse_args(argv)
    try:
        cells = harness_cells(args.run_dir)
    except OSError as e:
        print(f"crosscheck: {args.run_dir}: {e.strerror}", file=sys.stderr)
        return 2
    if not args.all:  # the tightest quota-limited cell of each backend
        first: dict[str, Cell] = {}
        for key in sorted(cells, key=lambda k: (k[0], k[1] / k[3], k[2])):
            first.setdefault(key[0], key)
        cells = {k: cells[k] for k in first.values()}
    if not cells:
        print(f"crosscheck: {args.run_dir} has no quota-limited cpu_quota cell (quota < threads)", file=sys.stderr)
        return 2
    tool: dict[tuple[float, float, int, int], dict[str, float]] = {}
    bad = 0
    print(f"{'cell':<45} {'backend':<12} {'harness':>8} {'independent':>11} {'diff':>7}  verdict")
    for (backend, quota, period_ms, threads, weight), h in sorted(cells.items(),
                                                                  key=lambda kv: kv[0][1:] + kv[0][:1]):
        cell = (quota, period_ms, threads, weight)
        if cell not in tool:
            try:
                tool[cell] = independent(quota, period_ms, threads, weight, args.seconds, args.repeat)
            except RuntimeError as e:
                print(f"crosscheck: the independent tool cannot measure here: {e}", file=sys.stderr)
                return 2
        t = tool[cell]
        diff = h["cpu_ratio"] / t["cpu_ratio"] - 1
        if min(h.get("throttled_share", 1.0), t["throttled_share"]) < THROTTLED:
            verdict = "not comparable: the host starved the workload (throttled in < 80 % of periods)"
        elif abs(diff) <= args.tolerance:
            verdict = "agree"
        else:
            verdict = f"DISAGREE (> {args.tolerance:.1%})"
            bad += 1
        name = f"quota {quota:g}, {period_ms:g} ms, {threads} thr" + (f", weight {weight}" if weight else "")
        print(f"{name:<45} {backend:<12} {h['cpu_ratio']:>8.4f} {t['cpu_ratio']:>11.4f} {diff:>+7.2%}  {verdict}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
