"""Report and compare at scale: wall time and peak RSS of ``isobench report`` and ``compare``.

A bench scenario, not a test (issue 27): nothing here asserts a speed.  For each size it
writes a run directory through the real ``harness.results.RunWriter`` (so the run has
whatever the writer of this commit stores beside its samples), then times, each in a fresh
process:

- ``isobench report RUN``;
- ``isobench compare RUN RUN`` (a run against itself, as the issue measured it);
- with ``--legacy``, the same two on a copy holding only ``manifest.json`` + ``samples.jsonl``
  (how runs stored by earlier versions are read).

The rows are real-shaped: the startup rows of a stored run (bare and container, with their
params, conditions, position and predecessor) tiled to the size asked, each value jittered
by a seeded log-normal factor.  Peak RSS is the child's ``ru_maxrss`` (``os.wait4``); a
child is killed when its RSS passes ``--max-rss`` or its time ``--max-seconds`` (recorded
as such: today's reader needs ~10 KiB a row).

    python -m benchmarks.results_scale --rows 38000,1000000 --out docs/runs/results-scale/after.json

The page citing its figures: docs/results.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "docs" / "runs" / "dev-host-startup-quiet"
BACKENDS = ("bare", "container")
SAMPLE_FIELDS = ("backend", "workload", "measurement", "metric", "value", "unit", "params", "repetition", "warmup",
                 "status", "error", "accel", "note", "case", "position", "predecessor", "conditions")


def template_rows(template: Path = TEMPLATE, backends: tuple[str, ...] = BACKENDS) -> list[dict[str, Any]]:
    with open(template / "samples.jsonl") as fh:
        rows = [json.loads(line) for line in fh]
    return [r for r in rows if r["backend"] in backends]


def tiled(rows: list[dict[str, Any]], n: int, seed: int) -> Iterator[dict[str, Any]]:
    """``n`` rows cycling through ``rows``; each pass is a new block of repetitions and positions."""
    import numpy as np

    rng = np.random.default_rng(seed)
    reps = 1 + max(int(r.get("repetition") or 0) for r in rows)
    positions = 1 + max(int(r.get("position") or 0) for r in rows)
    jitter = rng.lognormal(0.0, 0.03, size=n)
    for i in range(n):
        k, r = divmod(i, len(rows))
        row = rows[r]
        value = row["value"]
        if value is not None and row["unit"] == "ms":
            value = float(value) * float(jitter[i])
        yield {**row, "value": value, "repetition": int(row.get("repetition") or 0) + k * reps,
               "warmup": bool(row.get("warmup")) and k == 0,
               "position": None if row.get("position") is None else int(row["position"]) + k * positions}


def make_run(results: Path, n: int, seed: int = 0, run_id: str | None = None) -> Path:
    """A completed run directory of ``n`` real-shaped startup rows, written by this commit's RunWriter."""
    from harness.results import RunWriter, Sample

    manifest = json.loads((TEMPLATE / "manifest.json").read_text())
    keep = {k: manifest[k] for k in ("host", "scenario", "argv") if k in manifest}
    keep["backends"] = {b: v for b, v in (manifest.get("backends") or {}).items() if b in BACKENDS}
    w = RunWriter(results, keep, run_id=run_id)
    for row in tiled(template_rows(), n, seed):
        w.add(Sample(**{f: row.get(f) for f in SAMPLE_FIELDS if f in row}))
    w.finish("completed")
    return w.dir


def legacy_copy(run: Path, dest: Path) -> Path:
    """The run as an earlier isobench stored it: the manifest and the JSONL only."""
    dest.mkdir(parents=True)
    for name in ("manifest.json", "samples.jsonl"):
        shutil.copy2(run / name, dest / name)
    return dest


def measure(argv: list[str], max_rss_mib: float, max_seconds: float) -> dict[str, Any]:
    """Wall time and peak RSS of one command in a fresh process (killed past either limit)."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err)
        status_file = Path(f"/proc/{proc.pid}/status")
        killed = ""
        while True:
            # wait4 (not Popen.poll) reaps the child and gives its own ru_maxrss
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            try:
                rss = next((int(line.split()[1]) for line in status_file.read_text().splitlines()
                            if line.startswith("VmRSS:")), 0) / 1024
            except (OSError, ValueError):
                rss = 0.0
            if not killed and (rss > max_rss_mib or time.perf_counter() - t0 > max_seconds):
                killed = f"killed: RSS {rss:.0f} MiB after {time.perf_counter() - t0:.0f} s"
                os.kill(proc.pid, signal.SIGKILL)
            time.sleep(0.05)
        proc.returncode = rc = os.waitstatus_to_exitcode(status)
        err.seek(0)
        stderr = err.read().decode(errors="replace")[-2000:]
    out: dict[str, Any] = {"seconds": round(time.perf_counter() - t0, 2), "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
                           "rc": rc}
    if killed:
        out["killed"] = killed
    elif rc != 0:  # compare exits 1 on a regression; anything else is an error
        out["stderr"] = stderr
    return out


def _commit() -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "?"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.results_scale", description=__doc__.splitlines()[0])
    p.add_argument("--rows", default="38000,1000000", help="comma-separated row counts (default 38000,1000000)")
    p.add_argument("--out", type=Path, help="write the figures to this JSON file (default: print only)")
    p.add_argument("--label", default="", help="what this measures (e.g. 'before: JSONL + pandas')")
    p.add_argument("--legacy", action="store_true", help="also time a JSONL-only copy of each run")
    p.add_argument("--max-rss", type=float, default=6144, metavar="MIB", help="kill a command past this RSS")
    p.add_argument("--max-seconds", type=float, default=600, help="kill a command past this time")
    p.add_argument("--work", type=Path, help="where the runs are written (default: a temporary directory)")
    args = p.parse_args(argv)

    py = [sys.executable, "-m", "harness"]
    figures: list[dict[str, Any]] = []
    work = args.work or Path(tempfile.mkdtemp(prefix="isobench-bench-scale-"))
    try:
        for n in (int(x) for x in args.rows.split(",")):
            t0 = time.perf_counter()
            run = make_run(work / "results", n, run_id=f"scale-{n}")
            write_s = time.perf_counter() - t0
            size = sum(f.stat().st_size for f in run.rglob("*") if f.is_file())
            runs = {"store": run}
            if args.legacy:
                runs["legacy"] = legacy_copy(run, work / "results" / f"scale-{n}-legacy")
            for kind, r in runs.items():
                for what, cmd in (("report", ["report", str(r), "--out", str(work / "reports" / r.name)]),
                                  ("compare", ["compare", str(r), str(r), "--out", str(work / "cmp" / r.name)])):
                    res = {"rows": n, "command": what, "run": kind, "write_seconds": round(write_s, 1),
                           "run_bytes": size, **measure(py + cmd, args.max_rss, args.max_seconds)}
                    print(json.dumps(res), flush=True)
                    figures.append(res)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    doc = {"benchmark": "benchmarks/results_scale.py", "label": args.label, "commit": _commit(),
           "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "host": platform.node(),
           "cores": os.cpu_count(), "loadavg_at_end": list(os.getloadavg()), "python": platform.python_version(),
           "template": str(TEMPLATE.relative_to(ROOT)), "backends": list(BACKENDS), "figures": figures}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
