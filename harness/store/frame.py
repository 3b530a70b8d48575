"""A run's rows as a pandas DataFrame, built a piece (a segment, a chunk of the log) at a time.

No row becomes a Python object: numbers go from Arrow to numpy, and each text column to an
array of references to one Python string per distinct value (``backend`` is two strings, not a
million) -- 8 bytes a row, the object columns pandas has always given text (NaN where a row has
none).  Only one piece's Arrow buffers are alive at a time; the whole frame is assembled column
by column at the end.  A column keeps the type pandas gives the log's dicts: ints with a gap
become floats, a column with no value at all is None (NaN where some rows lack the key), JSON
text columns become their values again (``harness.store.schema``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from harness.store import schema

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import pandas as pd
    import pyarrow as pa

TEXT, FLOAT, INT, BOOL, OBJECT = "text", "float", "int", "bool", "object"


class Columns:
    """Pieces of a run in, one DataFrame out."""

    def __init__(self, columns: Callable[[str], bool] | None = None) -> None:
        self.wanted = columns or (lambda name: True)
        self.rows = 0
        self.parts: dict[str, list[tuple[int, np.ndarray]]] = {}
        self.json: set[str] = set()
        self.partial: set[str] = set()
        self._intern: dict[str, str] = {}

    def add(self, t: pa.Table) -> None:
        meta = schema.metadata(t.schema)
        self.json.update(meta.get("json_columns", []))
        self.partial.update(meta.get("partial", []))
        if self.rows and set(self.parts) - set(t.column_names):  # pieces before it had them
            self.partial.update(set(self.parts) - set(t.column_names))
        for name in t.column_names:
            if not self.wanted(name):
                continue
            if self.rows and name not in self.parts:
                self.partial.add(name)  # earlier pieces lack it
            self.parts.setdefault(name, []).append((self.rows, self._numpy(t.column(name))))
        self.rows += t.num_rows

    def _numpy(self, col: pa.ChunkedArray) -> np.ndarray:
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc

        ty = col.type
        nulls = col.null_count
        if pa.types.is_string(ty) or pa.types.is_large_string(ty) or pa.types.is_null(ty):
            if pa.types.is_null(ty) or nulls == len(col):
                return filled(len(col), math.nan)
            d = pc.dictionary_encode(col).combine_chunks()
            words = [self._intern.setdefault(w, w) for w in d.dictionary.to_pylist()]
            uniq = np.array([*words, math.nan], dtype=object)
            return uniq[d.indices.fill_null(len(words)).to_numpy()]
        if pa.types.is_integer(ty):
            return col.to_numpy().astype(np.float64 if nulls else np.int64, copy=True)
        if pa.types.is_floating(ty):
            return col.to_numpy().astype(np.float64, copy=True)
        if pa.types.is_boolean(ty) and not nulls:
            return col.to_numpy().astype(bool, copy=True)
        return np.array([math.nan if v is None else v for v in col.to_pylist()], dtype=object)

    def frame(self) -> pd.DataFrame:
        import pandas as pd

        data: dict[str, pd.Series] = {}
        for name in schema.ordered(self.parts):
            arr = self._column(name)
            data[name] = pd.Series(arr, dtype=arr.dtype, copy=False)  # object stays object: no str inference
            del self.parts[name]  # each piece's arrays go as soon as the column is whole
        return pd.DataFrame(data, copy=False)

    def _column(self, name: str) -> np.ndarray:
        import numpy as np

        parts = self.parts[name]
        kinds = {_kind(a) for _, a in parts}
        whole = sum(a.size for _, a in parts) == self.rows
        if kinds == {INT} and whole:
            out: np.ndarray = np.empty(self.rows, dtype=np.int64)
        elif kinds == {BOOL} and whole:
            out = np.empty(self.rows, dtype=bool)
        elif kinds <= {INT, FLOAT}:
            out = np.full(self.rows, math.nan)
        else:
            out = filled(self.rows, math.nan)
        for start, a in parts:
            out[start:start + a.size] = a
        if out.dtype == object:
            if name in self.json:
                values = out
                out = np.empty(self.rows, dtype=object)  # element by element: lists stay lists, not a 2-d array
                for i, v in enumerate(values):
                    out[i] = (math.nan if name in self.partial else None) if _gap(v) else json.loads(v)
            elif all(_gap(v) for v in out):  # no value at all: as pandas reads such dicts
                return np.full(self.rows, math.nan) if name in self.partial else filled(self.rows, None)
        return out


def _kind(a: np.ndarray) -> str:
    k = a.dtype.kind
    return INT if k in "iu" else FLOAT if k == "f" else BOOL if k == "b" else OBJECT


def _gap(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def constant(index: pd.Index, value: Any) -> Any:
    """A column of ``value`` on ``index``: one shared string for text (8 bytes a row, where pandas
    would copy the text into every row), the scalar itself otherwise."""
    import pandas as pd

    if isinstance(value, str):
        return pd.Series(filled(len(index), value), index=index, dtype=object, copy=False)
    return value


def filled(n: int, value: Any) -> np.ndarray:
    """An object array of ``n`` references to ``value`` itself (``np.full`` makes a new string each)."""
    import numpy as np

    out = np.empty(n, dtype=object)
    out.fill(value)
    return out


def build(pieces: Iterable[pa.Table], columns: Callable[[str], bool] | None = None) -> pd.DataFrame | None:
    """The pieces as one DataFrame (None: no rows), only the ``columns`` it says yes to; the memory
    Arrow held for them goes back."""
    import pyarrow as pa

    cols = Columns(columns)
    for t in pieces:
        cols.add(t)
    out = cols.frame() if cols.rows else None
    pa.default_memory_pool().release_unused()  # its allocator keeps freed pages: a segment's worth each
    return out
