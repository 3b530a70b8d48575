"""The terminal summary printed at the end of ``isobench run``: backends side by side.

Medians of the headline metrics, from the stored samples only (never measured
here).  Enforcement rows span a grid, so they show the median and the range.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

from harness import results
from harness.measure import catalogue
from harness.stats import series
from harness.stats.numbers import COMPACT, fmt


def backend_label(backend: str, accel: object) -> str:
    if not isinstance(accel, str) or not accel:  # None, or NaN from pandas
        return backend
    return f"{backend} ({series.accel_words(backend, accel) or accel})"


def table(run_dir: Path) -> tuple[list[str], list[list[str]]]:
    df = results.load(run_dir)
    if df.empty:
        return [], []
    ok = df[(df["status"] == "ok") & (~df["warmup"].astype(bool))]
    accel = ok.groupby("backend")["accel"].first().to_dict() if "accel" in ok else {}
    seen = list(dict.fromkeys(df["backend"]))  # the run's samples start in a shuffled order
    order = list(results.read_manifest(run_dir).get("backends") or {})
    backends = [b for b in order if b in seen] + [b for b in seen if b not in order]
    header = ["measurement", "workload", "metric"] + [backend_label(b, accel.get(b)) for b in backends]
    rows = []
    cat = catalogue()
    # the headline metrics (harness.metric: ``headline=True``), in declaration order
    for declared in cat.headline():
        measurement, metric = declared.family, declared.name
        info = cat.info(measurement)
        ranged = info is not None and info.ranged
        sel = ok[(ok["measurement"] == measurement) & (ok["metric"] == metric)]
        for workload, part in sel.groupby("workload", sort=False):
            unit = part["unit"].iloc[0]
            cells = []
            for b in backends:
                vals = part.loc[part["backend"] == b, "value"].astype(float)
                if vals.empty:
                    cells.append("–")
                elif ranged and vals.min() != vals.max():
                    cells.append(f"{fmt(vals.median(), COMPACT)} [{fmt(vals.min(), COMPACT)}–{fmt(vals.max(), COMPACT)}]")
                else:
                    cells.append(fmt(vals.median(), COMPACT))
            rows.append([measurement, str(workload), f"{metric} ({unit})"] + cells)
    failed = df[df["status"] == "failed"]
    if not failed.empty:
        rows.append(["failed samples", "", ""] +
                    [str(int((failed["backend"] == b).sum())) for b in backends])
    return header, rows


def print_summary(run_dir: Path, out: TextIO | None = None) -> None:
    from tabulate import tabulate

    out = out or sys.stdout
    manifest = results.read_manifest(run_dir)
    header, rows = table(run_dir)
    if not rows:
        print("no samples recorded", file=out)
        return
    print(f"\nisobench {manifest['scenario']['name']}: medians, [min–max] across a grid "
          f"({manifest['status']}, host {manifest['host'].get('hostname')}, "
          f"kernel {manifest['host'].get('kernel')}, cgroup v{manifest['host'].get('cgroup', {}).get('version')})",
          file=out)
    print(tabulate(rows, headers=header, tablefmt="simple", disable_numparse=True), file=out)
    failed = [r for r in results.read_samples(run_dir) if r["status"] == "failed"]
    for r in failed[:5]:
        print(f"failed: {r['backend']} {r['case']} rep {r['repetition']}: {r['error']}", file=out)
    if len(failed) > 5:
        print(f"… and {len(failed) - 5} more failed samples (see samples.jsonl)", file=out)
