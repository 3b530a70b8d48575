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
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.sample import Sample
from harness.store.log import SAMPLE_TYPES, SAMPLES_LIMIT
from runtimes.naming import check_run_id
from runtimes.owners import proc_start
from runtimes.userpaths import open_regular, read_regular

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

SCHEMA = "isobench/run"
SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
SAMPLES = "samples.jsonl"
#: optional: pytest-benchmark JSON of the kernel primitives (``nox -s bench`` takes it on the
#: same host right after the run); its sum joins the samples as ``floor_total`` rows
FLOOR = "floor.json"
#: what a manifest must hold for anything to read it (the rest is looked up with defaults)
MANIFEST_TYPES: dict[str, type | tuple[type, ...]] = {"run_id": str, "status": str, "host": (dict, type(None))}
#: samples between two segments of the columnar store during a run: a segment costs a pause of a
#: second or two between two steps (``_store``), so a run of ordinary length gets its store at the end
FLUSH_ROWS = 100_000


class ResultsError(RuntimeError):
    pass


__all__ = ["FLOOR", "MANIFEST", "SAMPLES", "SAMPLES_LIMIT", "SAMPLE_TYPES", "SCHEMA", "SCHEMA_VERSION", "ResultsError",
           "RunWriter", "Sample", "find_runs", "load", "new_run_id", "read_manifest", "read_samples"]


def new_run_id() -> str:
    return dt.datetime.now().strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)


def _boot_id() -> str:
    with contextlib.suppress(OSError):
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    return ""


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    """``data`` at ``path`` whole or not at all: a full disk leaves the previous version (a run's
    manifest, a fleet's, a matrix cell's: every JSON record the harness rewrites in place)."""
    tmp = path.with_suffix(".tmp")
    try:
        with open(tmp, "w") as fh:
            json.dump(data, fh, indent=2, sort_keys=False, default=str)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class RunWriter:
    """Owns one run directory while the run is in progress.

    A sample is one ``write`` of one line to an ``O_APPEND`` descriptor; a line the file system
    could not take whole (a full disk) is cut off again (``ftruncate`` to the last whole line),
    and the run ends with one ``ResultsError`` naming the file: every sample written before
    stays readable, the manifest keeps its last whole version."""

    def __init__(self, results_dir: Path, manifest: Mapping[str, Any], run_id: str | None = None):
        self.run_id = check_run_id(run_id) if run_id is not None else new_run_id()
        self.dir = Path(results_dir) / self.run_id
        try:
            self.dir.mkdir(parents=True, exist_ok=False)
        except OSError as e:
            raise ResultsError(f"cannot create the run directory {self.dir}: {e.strerror}") from e
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
        self._fd = -1
        try:
            write_json_atomic(self.dir / MANIFEST, self.manifest)
            self._fd = os.open(self.dir / SAMPLES, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as e:  # nothing of the run exists yet: leave no empty run behind
            shutil.rmtree(self.dir, ignore_errors=True)
            raise ResultsError(f"cannot write the run directory {self.dir}: {e.strerror}") from e
        self._size = 0  # the end of the last whole line
        self._seq = 0
        self._unstored = 0
        self.counts = {"ok": 0, "failed": 0}

    def add(self, sample: Sample) -> None:
        row = {"run_id": self.run_id, "seq": self._seq, **asdict(sample)}
        data = (json.dumps(row, default=str) + "\n").encode()
        try:  # straight to the kernel: a killed run keeps every sample written so far
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view):]
        except OSError as e:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self._size)  # no half line: what was whole stays readable
            raise ResultsError(f"cannot write {self.dir / SAMPLES}: {e.strerror}; the {self._seq} "
                               f"sample(s) written before are kept") from e
        self._size += len(data)
        self._seq += 1
        self.counts[sample.status] = self.counts.get(sample.status, 0) + 1
        self._unstored += 1
        if self._unstored >= FLUSH_ROWS:
            self._store()

    def add_all(self, samples: Iterable[Sample]) -> None:
        for s in samples:
            self.add(s)

    def update(self, **fields: Any) -> None:
        self.manifest.update(fields)
        try:
            write_json_atomic(self.dir / MANIFEST, self.manifest)
        except OSError as e:
            raise ResultsError(f"cannot write {self.dir / MANIFEST}: {e.strerror}; its last version and "
                               f"the {self._seq} sample(s) written are kept") from e

    def finish(self, status: str) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
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
            from harness.store.segments import StoreError

            try:
                convert.update(self.dir)
            except (OSError, StoreError) as e:
                print(f"isobench: store of {self.dir} not written: {e}", file=sys.stderr)
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
        data: dict[str, Any] = json.loads(read_regular(path))
    except FileNotFoundError as e:
        raise ResultsError(f"{run_dir}: not a run directory (no {MANIFEST})") from e
    except OSError as e:  # a file where the directory should be, a FIFO for a manifest …
        raise ResultsError(f"{run_dir}: not a run directory ({path.name}: {e.strerror})") from e
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ResultsError(f"{path}: unreadable manifest: {e}") from e
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise ResultsError(f"{path}: not an isobench manifest")
    for key, kind in MANIFEST_TYPES.items():
        if not isinstance(data.get(key), kind):
            raise ResultsError(f"{path}: not an isobench manifest ({key!r} is {type(data.get(key)).__name__})")
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
    try:
        fd = open_regular(path, SAMPLES_LIMIT)
    except OSError as e:
        raise ResultsError(f"{path}: unreadable ({e.strerror})") from e
    with open(fd, errors="replace") as fh:
        for n, line in enumerate(fh, 1):
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if not isinstance(row, dict) or any(not isinstance(row.get(k), t) for k, t in SAMPLE_TYPES.items()):
                raise ResultsError(f"{path}: line {n} is not a sample (a row needs {', '.join(SAMPLE_TYPES)})")
            rows.append(row)
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
        host = manifest.get("host") or {}
        cgroup = host.get("cgroup")
        df["host"] = frame.constant(df.index, host.get("hostname", ""))
        df["kernel"] = frame.constant(df.index, host.get("kernel", ""))
        df["cgroup_version"] = cgroup.get("version") if isinstance(cgroup, dict) else cgroup
        df["run_status"] = frame.constant(df.index, manifest["status"])
        frames.append(df)
    if not frames:
        return pd.DataFrame(columns=["run_id", "backend", "workload", "measurement", "metric", "value", "unit"])
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
