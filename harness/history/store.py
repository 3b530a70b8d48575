"""The history store: ``results/history/part-*.parquet``, append-only, compacted on demand.

Each ``add`` writes one new file (``harness.store.segments.write_atomic``: written under a
temporary name, flushed, renamed), so an append killed at any moment has added everything or
nothing, and the runs it was adding can be added again.  Nothing is rewritten in place: ``compact``
writes one file with every row before it removes the files it replaces, and a reader counts a
run once however many files hold it (a compaction killed before its removals).  A run is one
``(run_id, host, started)``: adding it again adds nothing.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from harness.history import record
from harness.store import segments

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    import pyarrow as pa

PART = "part-"
TMP = ".part-"
RUN_KEY = ("run_id", "host", "started")


class HistoryError(RuntimeError):
    pass


@dataclass(frozen=True)
class Added:
    runs: int  # runs appended
    rows: int
    skipped: list[str]  # runs already in the history
    path: Path | None  # the file written (None: nothing new)


def parts(history: Path) -> list[Path]:
    """The history's files, oldest first (their names begin with the time of the append)."""
    return sorted(history.glob(f"{PART}*.parquet")) if history.is_dir() else []


def _stamp() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")


def known_runs(history: Path) -> set[tuple[str, str, str]]:
    """The runs the history holds, by ``RUN_KEY`` (only those columns are read)."""
    t = read_table(history, columns=list(RUN_KEY))
    if t is None:
        return set()
    cols = [t.column(c).to_pylist() for c in RUN_KEY]
    return set(zip(*cols, strict=True))


def add(history: Path, run_dirs: Iterable[Path]) -> Added:
    """Append the runs not yet in the history, in one file."""
    segments.sweep(segments.leftovers(history, TMP, ""))
    known = known_runs(history)
    rows: list[dict[str, object]] = []
    skipped: list[str] = []
    runs = 0
    for run in run_dirs:
        new = record.rows(run)
        if not new:
            continue
        key = tuple(str(new[0][k]) for k in RUN_KEY)
        if key in known:
            skipped.append(str(run))
            continue
        known.add(key)  # type: ignore[arg-type]
        rows += new
        runs += 1
    if not rows:
        return Added(0, 0, skipped, None)
    now = _stamp()
    history.mkdir(parents=True, exist_ok=True)
    name = f"{PART}{now}-{secrets.token_hex(3)}"
    path = segments.write_atomic(record.table(rows, now), history / f"{name}.parquet", f"{TMP}{now}")
    return Added(runs, len(rows), skipped, path)


def _read(path: Path, columns: list[str] | None) -> pa.Table:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        meta = json.loads((pq.read_schema(path).metadata or {}).get(b"isobench", b"{}"))
        if meta.get("schema") != record.SCHEMA:
            raise HistoryError(f"{path}: not an isobench history file")
        if int(meta.get("schema_version", 0)) > record.VERSION:
            raise HistoryError(f"{path}: history schema version {meta['schema_version']} is newer than this "
                               f"isobench's ({record.VERSION})")
        return pq.read_table(path, columns=columns)
    except (OSError, ValueError, pa.ArrowException) as e:
        raise HistoryError(f"{path}: unreadable history file: {e}") from e


def read_table(history: Path, columns: list[str] | None = None) -> pa.Table | None:
    import pyarrow as pa

    tables = [_read(p, columns) for p in parts(history)]
    if not tables:
        return None
    return pa.concat_tables(tables, promote_options="permissive")


def read(history: Path) -> pd.DataFrame:
    """Every row, each run once (the first file holding it wins), in order of the runs' start."""
    t = read_table(history)
    if t is None:
        import pandas as pd

        return pd.DataFrame(columns=list(record.TYPES))
    df = t.to_pandas()
    keys = [*RUN_KEY, *record.SERIES]
    first = df.drop_duplicates(subset=list(RUN_KEY)).set_index(list(RUN_KEY))["added"]
    df = df[df.set_index(list(RUN_KEY)).index.map(first).to_numpy() == df["added"].to_numpy()]
    df = df.drop_duplicates(subset=keys)
    return df.sort_values(["started", "run_id"], kind="stable").reset_index(drop=True)


def compact(history: Path) -> tuple[int, int]:
    """Every file as one; returns (files replaced, rows kept)."""
    old = parts(history)
    if len(old) < 2:
        return 0, 0
    import pyarrow as pa

    df = read(history)
    now = _stamp()
    typed = pa.schema([pa.field(n, pa.type_for_alias(ty)) for n, ty in record.TYPES.items()])
    t = pa.Table.from_pandas(df[list(record.TYPES)], schema=typed, preserve_index=False)
    t = t.replace_schema_metadata({"isobench": json.dumps({"schema": record.SCHEMA,
                                                           "schema_version": record.VERSION})})
    segments.write_atomic(t, history / f"{PART}{now}-compact.parquet", f"{TMP}{now}")
    for p in old:
        p.unlink(missing_ok=True)
    return len(old), len(df)
