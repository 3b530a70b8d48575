"""History (harness.history): runs across commits in an append-only store, steps found where one
was injected and nowhere else, the false-alarm rate the report states, interrupted appends,
matrix and fleet directories in the same history."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from harness.history import store
from harness.history.lines import Query, lines
from harness.history.steps import Point, detect
from harness.stats.runs import ABS, LOG, median_se
from tests import synth

ROOT = Path(__file__).resolve().parent.parent
STEP_AT = 7  # the first run of the commit that slows the container's launches
RUNS = 12


def _commit(i: int) -> str:
    return f"{i:02d}" + "c0ffee" * 6 + "ab"


def make_runs(results: Path, n: int = RUNS, *, step: float = 1.3, host: str = "hostA", seed: int = 0) -> list[Path]:
    """``n`` synthetic runs on consecutive fake commits and days, each with a run effect of its own (2 %);
    from ``STEP_AT`` on the container's startup times are ``step`` times longer."""
    rng = np.random.default_rng(seed)
    runs = []
    for i in range(n):
        effect = {b: float(rng.lognormal(0, 0.02)) for b in ("bare", "container")}

        def scale(b: str, m: str, k: str, i: int = i, effect: dict[str, float] = effect) -> float:
            return effect[b] * (step if b == "container" and m == "startup" and i >= STEP_AT else 1.0)

        run = synth.make_run(results, hostname=host, measurements=("startup", "cpu_quota"),
                             backends=("bare", "container"), reps=10, seed=seed * 100 + i, scale=scale,
                             run_id=f"{host}-run-{i:02d}")
        m = json.loads((run / "manifest.json").read_text())
        m["host"]["commit"] = _commit(i)
        m["started"] = (dt.datetime(2026, 1, 1, tzinfo=dt.UTC) + dt.timedelta(days=i)).isoformat()
        (run / "manifest.json").write_text(json.dumps(m))
        runs.append(run)
    return runs


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``RUNS`` synthetic runs across commits, the step injected at ``STEP_AT`` (made once: ~1 s a run)."""
    results = tmp_path_factory.mktemp("history") / "results"
    make_runs(results)
    return results


def _isobench(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    from harness import cli

    code = cli.main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_history_report_finds_the_injected_step_and_names_its_run(runs: Path, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    hist = tmp_path / "history"
    stored = ROOT / "docs/runs/dev-host-bench"  # a stored run: a line of its own, one run long
    code, out, err = _isobench(capsys, "history", "--history", str(hist), "add", str(runs), str(stored))
    assert code == 0, err
    assert f"{RUNS + 1} run(s)" in out
    code, again, _ = _isobench(capsys, "history", "--history", str(hist), "add", str(runs))
    assert "0 run(s)" in again and f"{RUNS} already there" in again
    code, rep, err = _isobench(capsys, "history", "--history", str(hist), "report", "--metric", "launch_to_ready",
                               "--metric", "cpu_ratio", "--out", str(tmp_path / "report"))
    assert code == 0, err
    page = (tmp_path / "report" / "launch_to_ready.md").read_text()
    assert (tmp_path / "report" / "charts" / "launch_to_ready.png").stat().st_size > 0
    steps = [ln for ln in rep.splitlines() if ln.startswith("step:") and "hostA" in ln]
    # the container's two startup lines (noop, idle) step at the injected run, named; bare's do not
    assert len(steps) == 2 and all("container" in s and f"run hostA-run-{STEP_AT:02d}" in s for s in steps), steps
    assert all(f"commit {_commit(STEP_AT)[:10]}" in s and "regression +" in s for s in steps)
    assert page.count(f"`hostA-run-{STEP_AT:02d}`") >= 2 and "commit " + _commit(STEP_AT - 1)[:10] in page
    bare = [r for r in page.splitlines() if r.startswith("| bare · startup/") and "hostA" in r]
    assert bare and all(r.rstrip().endswith("| none |") for r in bare)
    cpu = (tmp_path / "report" / "cpu_ratio.md").read_text()
    assert "hostA" in cpu and "hostA" not in cpu.split("## Steps")[1].split("## Lines")[0]  # no cell stepped


def _line(rng: np.random.Generator, runs: int = 16, step_at: int | None = None, factor: float = 1.0) -> list[Point]:
    pts = []
    for r in range(runs):
        level = 10 * float(np.exp(rng.normal(0, 0.02))) * (factor if step_at is not None and r >= step_at else 1.0)
        x = np.sort(level * rng.lognormal(0, 0.05, 10))
        med = float(np.median(x))
        pts.append(Point(f"c{r}", med, float(median_se(x, LOG, presorted=True)),
                         float(median_se(x, ABS, presorted=True)), 10, med))
    return pts


def test_the_stated_false_alarm_rate_holds_and_a_step_is_found_where_it_is() -> None:
    rng = np.random.default_rng(2026)
    false = sum(bool(detect(_line(rng), "lower")) for _ in range(150))
    assert false <= 0.05 * 150  # at most alpha of the step-free lines (Holm over each line's boundaries)
    found = [detect(_line(rng, step_at=8, factor=1.2), "lower") for _ in range(40)]
    assert sum(len(s) == 1 and s[0].index == 8 and s[0].kind == "regression" for s in found) >= 38
    assert detect(_line(rng, step_at=8, factor=1 / 1.2), "lower")[0].kind == "improvement"
    assert detect(_line(rng, runs=1), "lower") == []  # one run: nothing to test


def test_compaction_and_a_compaction_killed_before_its_removals_count_each_run_once(runs: Path,
                                                                                   tmp_path: Path) -> None:
    hist = tmp_path / "history"
    for r in sorted(runs.iterdir())[:3]:
        store.add(hist, [r])
    before = store.read(hist)
    assert len(store.parts(hist)) == 3 and before["run_id"].nunique() == 3
    shutil.copy(store.parts(hist)[0], hist / "part-99999999T999999999999Z-copy.parquet")  # as if killed
    assert len(store.read(hist)) == len(before)
    assert store.compact(hist) == (4, len(before))
    assert len(store.parts(hist)) == 1 and len(store.read(hist)) == len(before)


KILLED_APPEND = """
import sys
from pathlib import Path
from harness.history import store
runs = sorted(p for p in Path(sys.argv[2]).iterdir())[:6]
for i, r in enumerate(runs):
    store.add(Path(sys.argv[1]), [r])
    print(i, flush=True)
"""


def test_an_append_killed_midway_adds_whole_runs_or_nothing(runs: Path, tmp_path: Path) -> None:
    """Killed at growing delays after its first append until one kill lands before the last: every
    time the history holds whole runs only, and the rest can be added."""
    six = sorted(runs.iterdir())[:6]
    per_run = len(store.record.rows(six[0]))
    midway = False
    for i, delay in enumerate((0.0, 0.01, 0.03, 0.1, 0.3)):
        hist = tmp_path / f"history-{i}"
        proc = subprocess.Popen([sys.executable, "-c", KILLED_APPEND, str(hist), str(runs)], cwd=ROOT,
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "0"
        time.sleep(delay)  # into a later append: reading its run, or writing its file
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        counts = store.read(hist).groupby("run_id").size()
        assert 1 <= len(counts) <= 6 and (counts == per_run).all()  # whole runs only
        added = store.add(hist, six)  # the rest, once; a dead writer's temporary file swept
        assert added.runs == 6 - len(counts) and len(added.skipped) == len(counts)
        assert store.read(hist)["run_id"].nunique() == 6
        assert not [p for p in hist.iterdir() if p.name.endswith(".tmp")]
        if len(counts) < 6:
            midway = True
            break
    assert midway, "no kill landed before the last append"


def test_matrix_and_fleet_runs_land_in_one_history_and_one_query_splits_them_by_kernel(tmp_path: Path) -> None:
    fleet = tmp_path / "results" / "fleet-f1"
    make_runs(fleet / "hostA", 2, seed=1)
    make_runs(fleet / "hostB", 2, host="hostB", seed=2)
    hist = tmp_path / "history"
    from harness.results import find_runs

    assert len(find_runs(tmp_path / "results")) == 4  # fleet-<id>/<host>/<run>
    store.add(hist, find_runs(tmp_path / "results"))
    matrix = ROOT / "docs/runs/matrix-small"
    cells = find_runs(matrix)
    assert len(cells) == 3
    store.add(hist, cells)
    df = store.read(hist)
    assert set(df["host"]) >= {"hostA", "hostB"} and df["in_guest"].sum() > 0
    # "CFS on 6.1 vs 6.12 over the last N runs": the bare CPU-quota lines of the guests, one per kernel cell
    q = Query(metrics=("cpu_ratio",), where=(("backend", "bare"), ("in_guest", "True"), ("params", "*quota=0.5*")),
              split="kernel", last=5)
    found = lines(df, q)
    places = {ln.label.split(" · ")[-1] for ln in found}
    assert any("6.1" in p for p in places) and any("6.12" in p for p in places), places
    assert all(ln.metric == "cpu_ratio" and ln.label.startswith("bare") for ln in found)
