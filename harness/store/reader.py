"""A run's rows as one Arrow table: the segments that cover its log, then the log past them.

The log is the truth: segments that reach past its end (the log was replaced) are not used; a
run whose log is gone (removed to save space) is read from its segments alone.  A segment
written by a newer isobench is passed over for the log where there is one; with no log it is
refused in one line.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from harness.store import log, schema, segments

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
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


def table(run_dir: Path | str, columns: Sequence[str] | None = None) -> pa.Table | None:
    """Every row of the run (None: none); ``columns``: only these (and only where they exist)."""
    run_dir = Path(run_dir)
    used, tail_from = coverage(run_dir)
    cols = list(columns) if columns is not None else None
    parts = []
    try:
        parts = [segments.read(s, cols) for s in used]
    except segments.StoreError:
        if not (run_dir / LOG).exists():
            raise
        parts, tail_from = [], 0  # a segment this isobench cannot read: the log holds the same rows
    for c in log.chunks(run_dir / LOG, tail_from):
        t = c.table
        parts.append(t.select([n for n in cols if n in t.column_names]) if cols is not None else t)
    return schema.unify(parts)


def frame(t: pa.Table) -> pd.DataFrame:
    """The table as pandas columns (text columns stay Arrow-backed where pandas does that; JSON text
    columns become their values again)."""
    import pandas as pd

    meta = schema.metadata(t.schema)
    json_columns, partial = meta.get("json_columns", []), set(meta.get("partial", []))
    # a column with no value at all reads as a DataFrame of the log's dicts has it: None where
    # every row holds the key, NaN where some lack it
    empty = [f.name for f in t.schema if t.num_rows and t.column(f.name).null_count == t.num_rows]
    df = t.to_pandas(split_blocks=True, self_destruct=True)
    for c in empty:
        df[c] = pd.Series(math.nan, index=df.index, dtype=float) if c in partial else \
            pd.Series([None] * len(df), index=df.index, dtype=object)
    for c in json_columns:
        if c in df.columns:
            gap = math.nan if c in partial else None
            df[c] = pd.Series([gap if v is None or v != v else json.loads(v) for v in df[c].astype(object)],
                              index=df.index, dtype=object)
    return df
