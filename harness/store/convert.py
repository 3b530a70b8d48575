"""Bring a run's store up to its log, and compact it.

``update`` stores the log's complete lines past the last segment, ``SEGMENT_ROWS`` rows a
segment (the run's writer calls it every ``harness.results.FLUSH_ROWS`` samples and at the end;
``isobench results convert`` calls it for runs stored before the store existed).  ``compact``
rewrites a chain of segments as one, written before the ones it replaces are removed: a kill in
between leaves both, and the reader's chain takes the compacted one.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from harness.store import log, reader, schema, segments

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa

#: rows per segment written from the log
SEGMENT_ROWS = 200_000


@dataclass(frozen=True)
class Updated:
    rows: int  # rows stored by this call
    segments: int  # segments written
    covered: int  # bytes of the log the store covers now
    log_bytes: int  # the log's size


def update(run_dir: Path | str) -> Updated:
    """Store the log's complete lines not yet in a segment (idempotent: nothing new, nothing written)."""
    run_dir = Path(run_dir)
    segments.sweep(segments.leftovers(run_dir))
    path = run_dir / reader.LOG
    used, start = reader.coverage(run_dir)
    end = log.complete_end(path)
    rows = written = 0
    if path.exists() and end > start:
        for c in log.chunks(path, start, complete_only=True, rows=SEGMENT_ROWS):
            if c.end <= c.start:
                continue
            segments.write(run_dir, _nonempty(c), c.start, c.end)
            rows += c.table.num_rows
            written += 1
            start = c.end
    return Updated(rows, written, start, path.stat().st_size if path.exists() else 0)


def _nonempty(c: log.Chunk) -> pa.Table:
    """A chunk of unreadable lines still gets a segment (the chain stays whole): one typed column."""
    import pyarrow as pa

    if c.table.num_columns:
        return c.table
    return schema.unify([pa.table({"seq": pa.array([], pa.int64())})])


def compact(run_dir: Path | str) -> int:
    """The run's chain of segments as one segment; returns how many it replaced (0: nothing to do)."""
    run_dir = Path(run_dir)
    used, end = reader.coverage(run_dir)
    if len(used) < 2 or used[0].start != 0:
        return 0
    tables = [segments.read(s) for s in used]
    merged = schema.unify(tables)
    if merged is None:
        return 0
    del tables
    segments.write(run_dir, merged, 0, end)
    for s in used:
        with contextlib.suppress(FileNotFoundError):
            s.path.unlink()
    return len(used)
