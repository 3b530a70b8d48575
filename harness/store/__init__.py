"""The columnar results store: the samples of a run as Parquet beside its ``samples.jsonl``.

``samples.jsonl`` stays the run's append log (one line flushed per sample: a run killed at
any moment keeps every sample it measured).  ``store/`` holds its columnar copy, in
segments: each ``store/samples-NNNNNN.parquet`` covers one byte range of the log, is written
to a temporary name and renamed into place (a segment is whole or absent), and names in its
metadata the range it covers and the schema it was written with.  A reader takes the
segments that cover the log from its first byte on, then parses whatever the log holds past
them (the tail of a live or killed run); a run stored before the store existed is all tail.

Columns are typed: a row's ``params`` and ``conditions`` are ``param_<key>`` and
``cond_<key>`` columns of their own type (``harness.store.schema``), the shape
``harness.results.load`` has always returned.

- ``schema``: the columns, their types, the schema version;
- ``segments``: writing a segment atomically, listing and reading them;
- ``log``: the JSONL log, parsed in bounded chunks into columns;
- ``reader``: a run's rows as an Arrow table (segments + tail);
- ``convert``: bring a run's store up to its log (``isobench results convert``), compact it.

pyarrow is imported inside the functions: a process that measures (``isobench run``) never
imports it (its threads and memory stay out of the harness); the run's writer hands its
segment to a short-lived ``python -m harness.store`` instead (``harness.results.RunWriter``).
"""


class StoreError(RuntimeError):
    """A store this isobench cannot read or write: one line, naming the file."""
