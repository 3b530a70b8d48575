"""``isobench results convert|info PATH…``: the columnar store of run directories (``harness.store``).

``convert`` writes the store of runs stored before it existed (or brings a killed run's store up
to its log); ``--compact`` merges a run's segments into one.  ``info`` says what each run's store
covers.  A PATH is a run directory or any directory holding runs (``results/``, a matrix or fleet
directory).  Exit 2 with one line when a PATH holds no run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from harness.store.segments import Segment

HELP = "the columnar store of run directories: convert older runs (JSONL) to it, compact it, show it"


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    conv = sub.add_parser("convert", help="store each run's samples.jsonl as Parquet (idempotent)")
    conv.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="run directories, or directories of runs")
    conv.add_argument("--compact", action="store_true", help="then merge each run's segments into one")
    info = sub.add_parser("info", help="rows, segments and bytes of each run's store and log")
    info.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="run directories, or directories of runs")


def _runs(paths: list[Path]) -> list[Path]:
    from harness.errors import UserError
    from harness.results import find_runs

    runs: list[Path] = []
    for p in paths:
        found = find_runs(p)
        if not found:
            raise UserError(f"{p}: no run directory there (a run holds manifest.json)")
        runs += [r for r in found if r not in runs]
    return runs


def main(args: argparse.Namespace) -> int:
    runs = _runs(args.paths)
    return _convert(runs, args.compact) if args.action == "convert" else _info(runs)


def _convert(runs: list[Path], compact: bool) -> int:
    from harness.store import convert
    from harness.store.segments import StoreError

    failed = 0
    for run in runs:
        try:
            u = convert.update(run)
            merged = convert.compact(run) if compact else 0
        except (OSError, StoreError) as e:  # the run's log keeps every sample: nothing is lost
            print(f"isobench results: {run}: {getattr(e, 'strerror', None) or e}", file=sys.stderr)
            failed += 1
            continue
        what = f"{u.rows} rows stored in {u.segments} segment(s)" if u.segments else "up to date"
        print(f"{run}: {what}" + (f"; {merged} segments compacted into one" if merged else ""))
    return 2 if failed else 0


def _info(runs: list[Path]) -> int:
    from harness.store import reader, segments

    for run in runs:
        used, covered = reader.coverage(run)
        log = run / reader.LOG
        size = log.stat().st_size if log.exists() else 0
        stored = sum(s.path.stat().st_size for s in used)
        rows = _rows(used)
        tail = size - covered if log.exists() else 0
        print(f"{run}: {len(used)} segment(s), {rows} rows, {stored / 2**20:.2f} MiB; log "
              f"{size / 2**20:.2f} MiB" + (f", {tail} bytes not yet stored" if tail > 0 else ", all stored")
              + (f"; {len(segments.leftovers(run))} temporary file(s) of a killed writer"
                 if segments.leftovers(run) else ""))
    return 0


def _rows(used: list[Segment]) -> int:
    import pyarrow.parquet as pq

    return sum(pq.read_metadata(s.path).num_rows for s in used)
