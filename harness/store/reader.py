"""A run's rows: the segments that cover its log, then the log past them, a piece at a time.

The log is the truth: segments that reach past its end (the log was replaced) are not used; a
run whose log is gone (removed to save space) is read from its segments alone.  A segment
written by a newer isobench is passed over for the log where there is one; with no log it is
refused in one line.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from harness.store import log, schema, segments

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa

#: the append log beside the store (``harness.results.SAMPLES``: one name, kept in step by a test)
LOG = "samples.jsonl"


def coverage(run_dir: Path) -> tuple[list[segments.Segment], int]:
    """The segments a reader uses and the log offset where the unstored tail begins."""
    path = Path(run_dir) / LOG
    size = path.stat().st_size if path.exists() else None
    used = segments.chain(run_dir, limit=size)
    if size is None:  # no log: every segment, in order (a chain from 0 if there is one)
        used = used or segments.listed(run_dir)
    return used, used[-1].end if used else 0


def pieces(run_dir: Path | str) -> Iterator[pa.Table]:
    """The run's rows a piece at a time: each segment of the chain, then the log past them in
    chunks.  Every segment's schema is checked before the first piece: one this isobench cannot
    read sends the whole run to its log (or is refused, ``StoreError``, where there is none)."""
    run_dir = Path(run_dir)
    used, tail_from = coverage(run_dir)
    try:
        for s in used:
            segments.check(s)
    except segments.StoreError:
        if not (run_dir / LOG).exists():
            raise
        used, tail_from = [], 0  # the log holds the same rows
    for s in used:
        yield segments.read(s)
    for c in log.chunks(run_dir / LOG, tail_from):
        yield c.table


def table(run_dir: Path | str) -> pa.Table | None:
    """Every row of the run as one Arrow table (None: none)."""
    return schema.unify(list(pieces(run_dir)))


def without_warmups(t: pa.Table) -> pa.Table:
    """The rows that are not warm-ups (a row without the field counts as none)."""
    import pyarrow.compute as pc

    if "warmup" not in t.column_names:
        return t
    return t.filter(pc.invert(pc.fill_null(t.column("warmup").cast("bool"), False)))
