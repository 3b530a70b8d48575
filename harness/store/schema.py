"""The columns of the store: a sample row (``harness.sample.Sample`` as ``samples.jsonl`` holds it)
flattened into typed columns, and the schema version.

The fixed fields keep their own type whatever a segment holds (a failed sample's ``value`` is a
null double, not a missing column).  ``params`` and ``conditions`` become ``param_<key>`` and
``cond_<key>`` columns (nested mappings joined with ``.``, as ``pandas.json_normalize`` names
them), typed by their values: ints, floats (ints and floats together: float), booleans or text.
A column whose values no Arrow type holds together (a list, ints mixed with text) is stored as
JSON text and named in the segment's metadata, so a reader gives back the values themselves.
The metadata also names the columns some rows lack (``partial``): a column with no value at
all then reads as pandas reads such dicts (NaN where some rows lack it, else None).

Version history:
1. the first store (issue 27).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa

SCHEMA = "isobench/samples"
SCHEMA_VERSION = 1
#: a row's nested mappings and the prefix their keys take as columns
NESTED = {"params": "param_", "conditions": "cond_"}
#: the fixed fields of a row and their Arrow type names (``pa.type_for_alias``)
FIXED: dict[str, str] = {
    "run_id": "string", "seq": "int64", "backend": "string", "workload": "string", "measurement": "string",
    "metric": "string", "value": "double", "unit": "string", "repetition": "int64", "warmup": "bool",
    "status": "string", "error": "string", "accel": "string", "note": "string", "case": "string",
    "position": "int64", "predecessor": "string", "image": "string",
}


def flatten(row: Mapping[str, Any]) -> dict[str, Any]:
    """One row as columns: nested params and conditions spread into prefixed keys."""
    out: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    for k, v in row.items():
        if k in NESTED:
            nested[k] = _spread(v if isinstance(v, Mapping) else {}, NESTED[k])
        else:
            out[k] = v
    for k in NESTED:  # after the fixed fields, params before conditions: load()'s column order
        out.update(nested.get(k, {}))
    return out


def _spread(d: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping) and v:
            out.update(_spread(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def table(rows: Sequence[Mapping[str, Any]], extra: Mapping[str, Any] | None = None) -> pa.Table:
    """Rows (as ``samples.jsonl`` holds them) as a typed Arrow table; ``extra`` joins its metadata."""
    import pyarrow as pa

    flat = [flatten(r) for r in rows]
    seen: dict[str, None] = {}
    for r in flat:
        seen.update(dict.fromkeys(r))
    names = ordered(seen)
    arrays, json_columns, partial = [], [], []
    for name in names:
        values = [r.get(name) for r in flat]
        if any(name not in r for r in flat):
            partial.append(name)
        arr = _array(name, values)
        if arr is None:
            arr = pa.array([None if v is None else json.dumps(v, sort_keys=True) for v in values], pa.string())
            json_columns.append(name)
        arrays.append(arr)
    meta = {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "json_columns": json_columns, "partial": partial,
            **(extra or {})}
    t = pa.Table.from_arrays(arrays, names=list(names)) if names else pa.table({})
    return t.replace_schema_metadata({"isobench": json.dumps(meta)})


def ordered(names: Iterable[str]) -> list[str]:
    """Columns in ``load()``'s order: a row's own fields, then its params, then its conditions."""
    names = list(names)
    prefixes = tuple(NESTED.values())
    return [n for n in names if not n.startswith(prefixes)] + \
        [n for p in prefixes for n in names if n.startswith(p)]


def _array(name: str, values: list[Any]) -> pa.Array | None:
    """The column as its fixed type, or the type its values share; None when they share none."""
    import pyarrow as pa

    if name in FIXED:
        try:
            return pa.array(values, pa.type_for_alias(FIXED[name]))
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            pass  # a row of another isobench: keep the column by its values
    try:
        arr = pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        return None
    t = arr.type
    if pa.types.is_null(t) or pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t) \
            or pa.types.is_string(t):
        return arr
    return None  # lists, structs, mixed: JSON text


def metadata(schema: pa.Schema) -> dict[str, Any]:
    raw = (schema.metadata or {}).get(b"isobench")
    if raw is None:
        return {}
    try:
        meta = json.loads(raw)
    except ValueError:
        return {}
    return meta if isinstance(meta, dict) else {}


def unify(tables: Iterable[pa.Table]) -> pa.Table | None:
    """Segments (and a parsed tail) as one table: columns in order of first appearance, missing ones
    null; a column typed differently in two of them takes the wider type (ints and floats: float;
    anything else: text)."""
    import pyarrow as pa

    tables = [t for t in tables if t.num_columns]
    if not tables:
        return None
    fields: dict[str, pa.DataType] = {}
    json_columns: dict[str, None] = {}
    partial: dict[str, None] = {}
    for t in tables:
        meta = metadata(t.schema)
        json_columns.update(dict.fromkeys(meta.get("json_columns", [])))
        partial.update(dict.fromkeys(meta.get("partial", [])))
        for f in t.schema:
            fields[f.name] = _wider(fields[f.name], f.type) if f.name in fields else f.type
    schema = pa.schema([pa.field(n, fields[n]) for n in ordered(fields)])
    out = []
    for t in tables:
        cols = []
        for f in schema:
            if f.name in t.column_names:
                col = t.column(f.name)
                cols.append(col if col.type == f.type else col.cast(f.type))
            else:
                cols.append(pa.nulls(t.num_rows, f.type))
                partial[f.name] = None
        out.append(pa.Table.from_arrays(cols, schema=schema))
    merged = pa.concat_tables(out) if len(out) > 1 else out[0]
    meta = {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "json_columns": list(json_columns),
            "partial": list(partial)}
    return merged.replace_schema_metadata({"isobench": json.dumps(meta)})


def _wider(a: pa.DataType, b: pa.DataType) -> pa.DataType:
    import pyarrow as pa

    if a == b or pa.types.is_null(b):
        return a
    if pa.types.is_null(a):
        return b
    numeric = (pa.types.is_integer, pa.types.is_floating)
    if any(f(a) for f in numeric) and any(f(b) for f in numeric):
        return pa.float64()
    return pa.string()
