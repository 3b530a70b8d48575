"""The results store: ``results/<run-id>/manifest.json`` + ``samples.jsonl`` + ``store/``.

The manifest is written when the run starts (status ``running``) and rewritten
atomically when it ends.  Samples are appended and flushed one line at a
time, so a run killed at any moment keeps every sample it completed; a
manifest still saying ``running`` whose process is gone reads as
``interrupted``.  ``store/`` is the log's columnar copy (``harness.store``),
written every ``FLUSH_ROWS`` samples and when the run ends.

Sample rows are tidy: one measurement each (see ``Sample``).  ``load()``
returns them as a pandas DataFrame with every parameter as a ``param_*`` column.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import json
import os
import secrets
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.sample import Sample
from runtimes.naming import check_run_id
from runtimes.owners import proc_start

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

SCHEMA = "isobench/run"
SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
SAMPLES = "samples.jsonl"
#: optional: pytest-benchmark JSON of the kernel primitives (``nox -s bench`` takes it on the
#: same host right after the run); its sum joins the samples as ``floor_total`` rows
FLOOR = "floor.json"
#: samples between two segments of the columnar store during a run: a segment costs a pause of a
#: second or two between two steps (``_store``), so a run of ordinary length gets its store at the end
FLUSH_ROWS = 100_000


class ResultsError(RuntimeError):
    pass


__all__ = ["FLOOR", "MANIFEST", "SAMPLES", "SCHEMA", "SCHEMA_VERSION", "ResultsError", "RunWriter", "Sample",
           "find_runs", "load", "new_run_id", "read_manifest", "read_samples"]


def new_run_id() -> str:
    return dt.datetime.now().strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)


def _boot_id() -> str:
    with contextlib.suppress(OSError):
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    return ""


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as fh:
        json.dump(data, fh, indent=2, sort_keys=False, default=str)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class RunWriter:
    """Owns one run directory while the run is in progress."""

    def __init__(self, results_dir: Path, manifest: Mapping[str, Any], run_id: str | None = None):
        self.run_id = check_run_id(run_id) if run_id is not None else new_run_id()
        self.dir = Path(results_dir) / self.run_id
        self.dir.mkdir(parents=True, exist_ok=False)
        self.manifest: dict[str, Any] = {
            "schema": SCHEMA,
            "schema_version": SCHEMA_VERSION,
            "run_id": self.run_id,
            "status": "running",
            "started": _now(),
            "ended": None,
            "writer": {"pid": os.getpid(), "start": proc_start(os.getpid()), "boot_id": _boot_id()},
            **manifest,
        }
        _write_json_atomic(self.dir / MANIFEST, self.manifest)
        self._fh = open(self.dir / SAMPLES, "a", buffering=1)
        self._seq = 0
        self._unstored = 0
        self.counts = {"ok": 0, "failed": 0}

    def add(self, sample: Sample) -> None:
        row = {"run_id": self.run_id, "seq": self._seq, **asdict(sample)}
        self._seq += 1
        self.counts[sample.status] = self.counts.get(sample.status, 0) + 1
        self._fh.write(json.dumps(row, default=str) + "\n")
        self._fh.flush()  # a killed run keeps every sample written so far
        self._unstored += 1
        if self._unstored >= FLUSH_ROWS:
            self._store()

    def add_all(self, samples: Iterable[Sample]) -> None:
        for s in samples:
            self.add(s)

    def update(self, **fields: Any) -> None:
        self.manifest.update(fields)
        _write_json_atomic(self.dir / MANIFEST, self.manifest)

    def finish(self, status: str) -> None:
        self._fh.close()
        self._store()
        self.update(status=status, ended=_now(), samples=dict(self.counts))

    def _store(self) -> None:
        """Store the log's new lines as a segment (``harness.store``).  In a process that has pyarrow
        already (pandas imports it) here; else in a short-lived child, so a process that measures
        never holds pyarrow's threads and memory.  A store that cannot be written loses nothing:
        the log has every sample, and ``isobench results convert`` writes the store later."""
        self._unstored = 0
        if "pyarrow" in sys.modules:
            from harness.store import convert

            convert.update(self.dir)
            return
        root = str(Path(__file__).resolve().parent.parent)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
        done = subprocess.run([sys.executable, "-m", "harness.store", str(self.dir)], env=env,
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            print((done.stderr.strip().splitlines() or [f"isobench: store of {self.dir} not written"])[-1],
                  file=sys.stderr)


def read_manifest(run_dir: Path | str) -> dict[str, Any]:
    path = Path(run_dir) / MANIFEST
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError as e:
        raise ResultsError(f"{run_dir}: not a run directory (no {MANIFEST})") from e
    except json.JSONDecodeError as e:
        raise ResultsError(f"{path}: unreadable manifest: {e}") from e
    if data.get("schema") != SCHEMA:
        raise ResultsError(f"{path}: not an isobench manifest")
    if data.get("schema_version", 0) > SCHEMA_VERSION:
        raise ResultsError(f"{path}: schema version {data['schema_version']} is newer than this isobench")
    if data.get("status") == "running" and not _writer_alive(data.get("writer", {})):
        data["status"] = "interrupted"
    return data


def _writer_alive(writer: Mapping[str, Any]) -> bool:
    pid = writer.get("pid")
    if not pid or writer.get("boot_id") != _boot_id():
        return False
    return bool(proc_start(int(pid))) and proc_start(int(pid)) == writer.get("start")


def read_samples(run_dir: Path | str) -> list[dict[str, Any]]:
    """Every complete line of the log as a dict (small runs and tests; ``load`` reads the store);
    a line cut off by a kill mid-write is dropped."""
    rows: list[dict[str, Any]] = []
    path = Path(run_dir) / SAMPLES
    if not path.exists():
        return rows
    with open(path) as fh:
        for line in fh:
            with contextlib.suppress(json.JSONDecodeError):
                rows.append(json.loads(line))
    return rows


#: how deep ``find_runs`` looks below a directory: fleet-<id>/<host>/<run>, matrix-<id>/<run>
FIND_DEPTH = 4


def find_runs(path: Path | str, depth: int = FIND_DEPTH) -> list[Path]:
    """The run directories at or below ``path`` (a run, ``results/``, a matrix or fleet directory),
    sorted; nothing below a run is searched (its logs and store)."""
    path = Path(path)
    if (path / MANIFEST).is_file():
        return [path]
    if depth <= 0 or not path.is_dir():
        return []
    out: list[Path] = []
    try:
        children = sorted(p for p in path.iterdir() if p.is_dir() and not p.is_symlink())
    except OSError:
        return []
    for child in children:
        out += find_runs(child, depth - 1)
    return out


def _floor_rows(run_dir: Path, run_id: str) -> list[dict[str, Any]]:
    if not (run_dir / FLOOR).exists():
        return []
    from harness import floor

    try:
        return [{"run_id": run_id, "seq": -1, **asdict(s)} for s in floor.samples(run_dir / FLOOR)]
    except floor.FloorError:
        return []


def load(*run_dirs: Path | str, warmups: bool = True, columns: Callable[[str], bool] | None = None) -> pd.DataFrame:
    """Samples of one or more runs as one tidy DataFrame, with host columns for comparisons;
    ``warmups=False`` leaves the warm-up rows out, ``columns`` keeps only the columns it says yes
    to (before either takes any memory).

    Read from the columnar store and the log past it a piece at a time (``harness.store``): no
    row is ever a Python object, except those of a log's unstored tail, a chunk at a time; text
    columns are object columns of shared strings (NaN where a row has none)."""
    import pandas as pd

    from harness.store import frame, reader, schema

    frames = []
    for run_dir in run_dirs:
        manifest = read_manifest(run_dir)
        floor = _floor_rows(Path(run_dir), manifest["run_id"])
        extra = [schema.table(floor)] if floor else []
        try:
            df = frame.build((t if warmups else reader.without_warmups(t)
                              for t in itertools.chain(reader.pieces(run_dir), extra)), columns)
        except reader.segments.StoreError as e:
            raise ResultsError(str(e)) from e
        if df is None or df.empty:
            continue
        host = manifest.get("host", {})
        df["host"] = frame.constant(df.index, host.get("hostname", ""))
        df["kernel"] = frame.constant(df.index, host.get("kernel", ""))
        df["cgroup_version"] = host.get("cgroup", {}).get("version")
        df["run_status"] = frame.constant(df.index, manifest["status"])
        frames.append(df)
    if not frames:
        return pd.DataFrame(columns=["run_id", "backend", "workload", "measurement", "metric", "value", "unit"])
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
