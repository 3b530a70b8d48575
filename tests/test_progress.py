"""Progress lines where there is no terminal: unit tests with a fake clock, and one real run."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from harness import progress

ROOT = Path(__file__).resolve().parent.parent


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_duration_words():
    assert progress.duration(0) == "0s"
    assert progress.duration(59.4) == "59s"
    assert progress.duration(185) == "3m05s"
    assert progress.duration(3725) == "1h02m"


def test_lines_at_most_every_interval_with_eta():
    out, clock = io.StringIO(), Clock()
    p = progress.Lines(10, out, interval=10.0, clock=clock)
    p.set_postfix_str("container startup/noop")
    clock.t += 2
    p.update()  # the first step always prints: a log shows the run started
    for _ in range(3):
        clock.t += 2
        p.update()  # 2, 4, 6 s after the first line: quiet
    clock.t += 4
    p.update()  # 10 s after the first line
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0] == "isobench: progress 1/10 (10 %) · container startup/noop · elapsed 2s · ETA 18s"
    assert lines[1] == "isobench: progress 5/10 (50 %) · container startup/noop · elapsed 12s · ETA 12s"
    p.close()
    p.close()  # idempotent
    last = out.getvalue().splitlines()[2:]
    assert last == ["isobench: progress 5/10 (50 %) · container startup/noop · elapsed 12s · ETA 12s"]


def test_eta_counts_each_kind_of_step_at_its_own_pace():
    """A guest boot takes seconds, a process launch milliseconds: interleaved, a plain average misleads."""
    out, clock = io.StringIO(), Clock()
    kinds = ["bare", "vm"] * 3 + ["vm"] * 4  # 3 bare and 7 vm steps
    p = progress.Lines(10, out, interval=0.0, clock=clock, kinds=kinds)
    clock.t += 0.01
    p.update()  # bare: 0.01 s
    clock.t += 10
    p.update()  # vm: 10 s
    # remaining: 2 bare at 0.01 s and 6 vm at 10 s = 60 s (a plain average would say 40 s)
    assert out.getvalue().splitlines()[-1].endswith("elapsed 10s · ETA 1m00s")


def test_final_line_says_done():
    out, clock = io.StringIO(), Clock()
    p = progress.Lines(2, out, clock=clock)
    p.update()
    clock.t += 1
    p.update()
    p.close()
    assert out.getvalue().splitlines()[-1].endswith("elapsed 1s · done")


def test_reporter_picks_by_terminal():
    assert isinstance(progress.reporter(3, None, io.StringIO()), progress.Lines)  # a pipe or file
    assert isinstance(progress.reporter(3, False, io.StringIO()), progress.Silent)
    bar = progress.reporter(3, True, io.StringIO())
    assert type(bar).__name__ == "tqdm"
    bar.close()


@pytest.mark.privileged
def test_a_run_under_a_pipe_prints_progress_lines(tmp_path):
    """What a CI log of `isobench run` shows: progress lines on stderr, no bar."""
    scenario = tmp_path / "tiny.toml"
    scenario.write_text('[scenario]\nname = "tiny"\nbackends = ["bare"]\nrepetitions = 3\nwarmups = 0\n\n'
                        '[[experiment]]\nmeasurement = "startup"\nworkloads = ["noop"]\n')
    r = subprocess.run([sys.executable, "-m", "harness", "run", str(scenario), "--results", str(tmp_path / "res"),
                        "--run-id", "isobench-progress-test"], cwd=ROOT, capture_output=True, text=True,
                       timeout=120, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("isobench: progress")]
    assert lines, r.stderr
    assert re.fullmatch(r"isobench: progress 3/3 \(100 %\) · bare startup/noop · elapsed \d+s · done", lines[-1])
    assert "\r" not in r.stderr  # no terminal bar in a log
