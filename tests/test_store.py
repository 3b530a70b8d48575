"""The columnar store (harness.store): typed columns, segments that survive SIGKILL, the log's
tail, older runs read unchanged and converted with one command, the schema version."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from harness import results
from harness.results import RunWriter, Sample
from harness.store import convert, reader, schema, segments

ROOT = Path(__file__).resolve().parent.parent
#: stored runs of every shape: old rows without position/conditions (and a floor.json), a matrix
#: guest, a second host on cgroup v2, an ordinary bench run
STORED = [ROOT / "tests/data/runs/dev-host-default", ROOT / "docs/runs/dev-host-bench",
          ROOT / "docs/runs/second-host-cgroup-v2",
          ROOT / "docs/runs/matrix-small/20261201-123558-matrix-f961-6.1-v1"]


def legacy_load(run_dir: Path) -> pd.DataFrame:
    """``results.load`` as it was before the store (the log's dicts, then pandas): the reference."""
    manifest = results.read_manifest(run_dir)
    rows = results.read_samples(run_dir) + results._floor_rows(Path(run_dir), manifest["run_id"])
    df = pd.DataFrame(rows)
    params = pd.json_normalize(df["params"].tolist()).add_prefix("param_")
    params.index = df.index
    df = pd.concat([df.drop(columns=["params"]), params], axis=1)
    if "conditions" in df.columns:
        cond = pd.json_normalize([c if isinstance(c, dict) else {} for c in df["conditions"]]).add_prefix("cond_")
        cond.index = df.index
        df = pd.concat([df.drop(columns=["conditions"]), cond], axis=1)
    host = manifest.get("host", {})
    df["host"] = host.get("hostname", "")
    df["kernel"] = host.get("kernel", "")
    df["cgroup_version"] = host.get("cgroup", {}).get("version")
    df["run_status"] = manifest["status"]
    return df


def assert_same(df: pd.DataFrame, reference: pd.DataFrame) -> None:
    """The same columns, values and number types; text in object columns (the reference, read by
    pandas 3 with pyarrow, may hold it as ``str``: pandas 2 gave object columns too)."""
    reference = reference.astype({c: object for c in reference.columns if reference[c].dtype == "str"})
    pd.testing.assert_frame_equal(df, reference)


def _sample(i: int, **kw) -> Sample:
    base = dict(backend="bare", workload="noop", measurement="startup", metric="launch_to_ready",
                value=1.0 + i, unit="ms", repetition=i, case="startup/noop", position=i,
                conditions={"load1": 0.5 + i})
    base.update(kw)
    return Sample(**base)


@pytest.mark.parametrize("run", STORED, ids=lambda p: p.name)
def test_a_stored_run_reads_as_before_from_its_log_and_from_its_store(run: Path, tmp_path: Path) -> None:
    copy = tmp_path / run.name
    shutil.copytree(run, copy)
    reference = legacy_load(copy)
    assert_same(results.load(copy), reference)  # the log alone: a run before the store
    u = convert.update(copy)
    assert u.segments == 1 and u.covered == u.log_bytes
    assert len(reader.coverage(copy)[0]) == 1
    assert_same(results.load(copy), reference)  # the store alone, number types included
    assert convert.update(copy).segments == 0  # idempotent


def test_the_store_reads_the_log_the_writer_writes() -> None:
    assert reader.LOG == results.SAMPLES  # one name, spelled in two modules that must not import each other


def test_json_columns_of_lists_of_one_length_stay_lists(tmp_path: Path) -> None:
    w = RunWriter(tmp_path, {"host": {}})
    for i in range(3):
        w.add(_sample(i, params={"cpus": [0, 1]}))
    w.finish("completed")
    assert [list(v) for v in results.load(w.dir)["param_cpus"]] == [[0, 1]] * 3
    assert results.load(w.dir)["param_cpus"].iloc[0] == [0, 1]


def test_params_and_conditions_are_typed_columns(tmp_path: Path) -> None:
    w = RunWriter(tmp_path, {"host": {"hostname": "h"}})
    w.add(_sample(0, params={"quota": 0.5, "threads": 2, "mode": "x", "nested": {"a": 1}}))
    w.add(_sample(1, params={"quota": 1, "threads": 3, "cpus": [0, 1]}))  # an int quota: still a float column
    w.add(_sample(2, value=None, status="failed", error="boom", params={"mixed": 1}))
    w.add(_sample(3, params={"mixed": "text"}))  # one key, two kinds of value: JSON text, read back as values
    w.finish("completed")
    (seg,) = segments.listed(w.dir)
    s = segments.read(seg).schema
    assert str(s.field("param_quota").type) == "double" and str(s.field("param_threads").type) == "int64"
    assert str(s.field("param_mode").type) == "string" and str(s.field("param_nested.a").type) == "int64"
    assert str(s.field("cond_load1").type) == "double" and str(s.field("value").type) == "double"
    assert schema.metadata(s)["schema_version"] == schema.SCHEMA_VERSION
    assert set(schema.metadata(s)["json_columns"]) == {"param_cpus", "param_mixed"}
    df = results.load(w.dir)
    assert df["param_quota"].tolist()[:2] == [0.5, 1.0]
    assert df.loc[1, "param_cpus"] == [0, 1] and df.loc[2, "param_mixed"] == 1 and df.loc[3, "param_mixed"] == "text"
    assert df.loc[2, "status"] == "failed" and pd.isna(df.loc[2, "value"]) and df.loc[2, "error"] == "boom"
    assert_same(df, legacy_load(w.dir))


def test_segments_during_a_run_and_the_tail_past_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(results, "FLUSH_ROWS", 5)
    w = RunWriter(tmp_path, {"host": {}})
    for i in range(12):
        w.add(_sample(i))
    # killed here: two segments of 5 rows and a tail of 2 only in the log
    used, tail = reader.coverage(w.dir)
    assert [len(segments.read(s)) for s in used] == [5, 5]
    assert tail < (w.dir / results.SAMPLES).stat().st_size
    assert list(results.load(w.dir)["seq"]) == list(range(12))
    w.finish("completed")
    assert sum(len(segments.read(s)) for s in reader.coverage(w.dir)[0]) == 12
    assert convert.compact(w.dir) == 3
    (one,) = segments.listed(w.dir)
    assert len(segments.read(one)) == 12 and list(results.load(w.dir)["seq"]) == list(range(12))


def test_a_compaction_killed_before_it_removed_the_old_segments_counts_no_row_twice(tmp_path: Path,
                                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(results, "FLUSH_ROWS", 4)
    w = RunWriter(tmp_path, {"host": {}})
    for i in range(10):
        w.add(_sample(i))
    w.finish("completed")
    used, end = reader.coverage(w.dir)
    assert len(used) == 3
    segments.write(w.dir, schema.unify([segments.read(s) for s in used]), 0, end)  # ... and killed here
    assert len(segments.listed(w.dir)) == 4
    assert list(results.load(w.dir)["seq"]) == list(range(10))


def test_the_log_is_the_truth(tmp_path: Path) -> None:
    w = RunWriter(tmp_path, {"host": {}})
    for i in range(6):
        w.add(_sample(i))
    w.finish("completed")
    log = w.dir / results.SAMPLES
    lines = log.read_text().splitlines(keepends=True)
    log.write_text("".join(lines[:3]))  # a log replaced by a shorter one: the segment reaches past it
    assert list(results.load(w.dir)["seq"]) == [0, 1, 2]
    log.unlink()  # no log: the store alone
    assert list(results.load(w.dir)["seq"]) == list(range(6))


def test_a_newer_store_schema_falls_back_to_the_log_or_is_refused_without_one(tmp_path: Path) -> None:
    w = RunWriter(tmp_path, {"host": {}})
    w.add(_sample(0))
    w.finish("completed")
    (seg,) = segments.listed(w.dir)
    t = segments.read(seg)
    meta = {**schema.metadata(t.schema), "schema_version": schema.SCHEMA_VERSION + 1}
    seg.path.unlink()
    segments.write(w.dir, t.replace_schema_metadata({"isobench": json.dumps(meta)}), seg.start, seg.end)
    assert list(results.load(w.dir)["seq"]) == [0]
    (w.dir / results.SAMPLES).unlink()
    with pytest.raises(results.ResultsError, match="newer"):
        results.load(w.dir)


KILLED_WRITER = """
import sys, time
import pyarrow  # segments written in this process: the kill lands while one is being written
from harness import results
from harness.results import RunWriter, Sample
results.FLUSH_ROWS = int(sys.argv[2])
w = RunWriter(sys.argv[1], {"host": {}}, run_id="killed")
i = 0
while True:
    w.add(Sample("bare", "noop", "startup", "launch_to_ready", 1.0 + i, "ms", {"quota": 0.5}, i,
                 conditions={"load1": 0.1}))
    i += 1
    if i == 40:
        print("ready", flush=True)
"""


def _kill_writer(tmp_path: Path, flush_rows: int, delay: float) -> Path:
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(tmp_path), str(flush_rows)], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    time.sleep(delay)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return tmp_path / "killed"


def test_sigkill_while_segments_are_written_keeps_every_sample(tmp_path: Path) -> None:
    """Killed at growing delays until one kill lands inside a segment's write (a temporary file left):
    every time, every complete line of the log is read once, and the store catches up."""
    mid_write = 0
    for i in range(10):
        run = _kill_writer(tmp_path / str(i), 25, 0.05 * i)  # a segment every 25 samples, in this process
        mid_write += bool(segments.leftovers(run))
        complete = (run / results.SAMPLES).read_bytes().count(b"\n")
        seq = list(results.load(run)["seq"])
        assert len(seq) >= complete and seq == list(range(len(seq)))  # none lost, none twice
        assert results.read_manifest(run)["status"] == "interrupted"
        convert.update(run)  # the store catches up; the killed writer's temporary file is swept
        assert not segments.leftovers(run)
        assert reader.coverage(run)[1] == reader.log.complete_end(run / results.SAMPLES)
        assert list(results.load(run)["seq"]) == seq
        if mid_write and i >= 2:
            break
    assert mid_write, "no kill landed inside a segment's write"


MEASURING_PROCESS = """
import sys
from harness.results import RunWriter, Sample
w = RunWriter(sys.argv[1], {"host": {}}, run_id="child")
for i in range(3):
    w.add(Sample("bare", "noop", "startup", "launch_to_ready", 1.0 + i, "ms", repetition=i))
w.finish("completed")
print("pyarrow" in sys.modules)
"""


def test_a_process_that_measures_never_imports_pyarrow(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-c", MEASURING_PROCESS, str(tmp_path)], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"  # its store was written by a child process
    assert len(segments.listed(tmp_path / "child")) == 1
    assert list(results.load(tmp_path / "child")["value"]) == [1.0, 2.0, 3.0]


def _isobench(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness", *argv], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


def test_results_convert_and_info_on_a_directory_of_runs(tmp_path: Path) -> None:
    for run in STORED[:2]:
        shutil.copytree(run, tmp_path / "results" / "deep" / run.name)
    out = _isobench("results", "convert", str(tmp_path / "results"))
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("rows stored in 1 segment(s)") == 2
    again = _isobench("results", "convert", str(tmp_path / "results"), "--compact")
    assert again.returncode == 0 and again.stdout.count("up to date") == 2
    info = _isobench("results", "info", str(tmp_path / "results"))
    assert info.returncode == 0 and info.stdout.count("1 segment(s)") == 2 and "all stored" in info.stdout
    bad = _isobench("results", "convert", str(tmp_path / "nothing-here"))
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "no run directory" in bad.stderr
