"""Segments of a run's store: ``store/samples-<start>-<end>.parquet``, each the log's bytes
[start, end) as columns.

A segment is written to a hidden temporary name, flushed to disk and renamed into place, so a
writer killed at any moment leaves a whole segment or none (and a temporary file that the next
``convert`` removes).  The chain a reader uses starts at byte 0 and follows segments end to
start, taking the one reaching furthest at each step: a compacted segment beside the ones it
replaced (a compaction killed before it removed them) or two writers' overlapping segments
never count a row twice.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from harness.store import StoreError, schema
from runtimes.owners import proc_start

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa

DIR = "store"
NAME = re.compile(r"^samples-(\d{12})-(\d{12})\.parquet$")
TMP_PREFIX = ".samples-"


__all__ = ["DIR", "Segment", "StoreError", "chain", "check", "leftovers", "listed", "read", "sweep", "write",
           "write_atomic"]


@dataclass(frozen=True)
class Segment:
    path: Path
    start: int
    end: int


def name(start: int, end: int) -> str:
    return f"samples-{start:012d}-{end:012d}.parquet"


def listed(run_dir: Path) -> list[Segment]:
    """Every segment of the run, by its name (nothing is opened)."""
    d = Path(run_dir) / DIR
    out = []
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        for p in d.iterdir():
            m = NAME.match(p.name)
            # a segment is a regular file of ours: a link or a FIFO by that name is no segment
            if m and int(m.group(2)) >= int(m.group(1)) and p.is_file() and not p.is_symlink():
                out.append(Segment(p, int(m.group(1)), int(m.group(2))))
    return sorted(out, key=lambda s: (s.start, -s.end))


def chain(run_dir: Path, limit: int | None = None) -> list[Segment]:
    """The segments covering the log from byte 0 without a gap, furthest-reaching first at each
    step; none reaching past ``limit`` (the log's size: a segment beyond it is of another log)."""
    by_start: dict[int, Segment] = {}
    for s in listed(run_dir):
        if limit is not None and s.end > limit:
            continue
        if s.start not in by_start or s.end > by_start[s.start].end:
            by_start[s.start] = s
    out, pos = [], 0
    while pos in by_start and by_start[pos].end > pos:
        out.append(by_start[pos])
        pos = by_start[pos].end
    return out


def write(run_dir: Path, table: pa.Table, start: int, end: int) -> Path:
    """The segment [start, end) of the log, atomically; returns its path."""
    d = Path(run_dir) / DIR
    d.mkdir(exist_ok=True)
    return write_atomic(table, d / name(start, end), f"{TMP_PREFIX}{start:012d}-{end:012d}")


def write_atomic(table: pa.Table, final: Path, tmp_stem: str) -> Path:
    """``table`` as the Parquet file ``final``, whole or not at all: written to ``<tmp_stem>.<pid>.tmp``
    beside it, flushed to disk, renamed, the directory flushed."""
    import pyarrow.parquet as pq

    tmp = final.parent / f"{tmp_stem}.{os.getpid()}.tmp"
    try:
        pq.write_table(table, tmp, compression="zstd")
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(final.parent)
    return final


def _fsync_dir(d: Path) -> None:
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def check(seg: Segment) -> None:
    """A segment this isobench can read (its footer only): else ``StoreError``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        meta = schema.metadata(pq.read_schema(seg.path))
    except (OSError, pa.ArrowException) as e:
        raise StoreError(f"{seg.path}: unreadable segment: {e}") from e
    if meta.get("schema") != schema.SCHEMA:
        raise StoreError(f"{seg.path}: not an isobench samples segment")
    if int(meta.get("schema_version", 0)) > schema.SCHEMA_VERSION:
        raise StoreError(f"{seg.path}: store schema version {meta['schema_version']} is newer than this "
                         f"isobench's ({schema.SCHEMA_VERSION})")


def read(seg: Segment) -> pa.Table:
    """One segment's rows (``check`` it first)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    check(seg)
    try:
        return pq.read_table(seg.path)
    except (OSError, pa.ArrowException) as e:
        raise StoreError(f"{seg.path}: unreadable segment: {e}") from e


def leftovers(run_dir: Path, prefix: str = TMP_PREFIX, sub: str = DIR) -> list[Path]:
    """Temporary files of writers that were killed (or are writing now: ``sweep`` tells them apart)."""
    d = Path(run_dir) / sub if sub else Path(run_dir)
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        return sorted(p for p in d.iterdir() if p.name.startswith(prefix) and p.name.endswith(".tmp"))
    return []


def sweep(tmp_files: list[Path]) -> None:
    """Remove the temporary files whose writer (the pid in their name) is gone."""
    for p in tmp_files:
        pid = p.name.rsplit(".", 2)[-2]
        if pid.isdigit() and proc_start(int(pid)):  # its writer lives: it may be writing now
            continue
        with contextlib.suppress(OSError):
            p.unlink()
