"""The run's append log, ``samples.jsonl``, read from a byte offset in bounded chunks.

One JSON object a line (``harness.results.RunWriter``).  A line that does not parse is skipped,
as the log's reader always has (the last line of a run killed mid-write); a chunk holds at most
``rows`` rows, so a log of any length is read in bounded memory: only a chunk's rows are ever
Python objects at once.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.store import StoreError, schema

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa

#: rows parsed into Python objects at once
CHUNK_ROWS = 50_000
#: a sample row: these keys with these types (``harness.sample.Sample``); any other row is not one
SAMPLE_TYPES: dict[str, type | tuple[type, ...]] = {
    "backend": str, "workload": str, "measurement": str, "metric": str, "value": (int, float, type(None)),
    "unit": str, "params": dict, "status": str}
#: the largest log read (a 10,000-launch soak writes ~30 MiB; a million rows ~500 MiB)
SAMPLES_LIMIT = 4 << 30


class NotASample(StoreError):
    """A line of the log that parses but is no sample: the file is not what it says it is."""


@dataclass(frozen=True)
class Chunk:
    table: pa.Table
    start: int  # the byte offset of its first line in the log
    end: int  # the offset just past its last complete line


def chunks(path: Path, start: int = 0, *, complete_only: bool = False, rows: int = CHUNK_ROWS) -> Iterator[Chunk]:
    """The log from ``start`` on, ``rows`` rows a chunk.  ``complete_only``: stop before a last line
    without its newline (a writer may still be writing it) -- what a segment may cover; a reader
    takes that line too when it parses."""
    from runtimes.userpaths import open_regular

    try:
        fh = open(open_regular(path, SAMPLES_LIMIT), "rb")  # a FIFO or a device is refused, not read
    except FileNotFoundError:
        return
    with fh:
        fh.seek(start)
        pos = start
        batch: list[dict[str, Any]] = []
        first = pos
        for n, line in enumerate(fh, 1):
            if not line.endswith(b"\n") and complete_only:
                break
            row = _parse(line)
            if row is not None:
                if any(not isinstance(row.get(k), t) for k, t in SAMPLE_TYPES.items()):
                    where = f"line {n}" if start == 0 else f"the line at byte {pos}"
                    raise NotASample(f"{path}: {where} is not a sample (a row needs {', '.join(SAMPLE_TYPES)})")
                batch.append(row)
            pos += len(line)
            if len(batch) >= rows:
                yield Chunk(schema.table(batch), first, pos)
                batch, first = [], pos
        if batch or pos > first:
            yield Chunk(schema.table(batch), first, pos)


def _parse(line: bytes) -> dict[str, Any] | None:
    """The line's object; None for a line that does not parse (cut by a kill).  Bytes that are no
    UTF-8 read as U+FFFD, as the log's reader always has."""
    try:
        row = json.loads(line.decode(errors="replace"))
    except ValueError:
        return None
    return row if isinstance(row, dict) else {}


def complete_end(path: Path) -> int:
    """The offset just past the log's last complete line (0 without a log)."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return 0
    if size == 0:
        return 0
    with open(path, "rb") as fh:
        step = 1 << 16
        end = size
        while end > 0:
            begin = max(0, end - step)
            fh.seek(begin)
            block = fh.read(end - begin)
            i = block.rfind(b"\n")
            if i >= 0:
                return begin + i + 1
            end = begin
    return 0
