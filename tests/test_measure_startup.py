"""startup: the launch/ready/exit/clean intervals and phase rows, on the real bare backend."""

from __future__ import annotations

from pathlib import Path

import pytest

import runtimes
from harness.case import Case
from harness.measure import MEASUREMENTS
from harness.measure.context import Context
from harness.measure.startup import intervals
from runtimes.base import BackendError, Limits, Timestamps
from runtimes.workloads import Workload


def test_intervals_from_timestamps() -> None:
    t = Timestamps(t_launch=1_000_000, t_ready=3_000_000, t_exit=4_000_000, t_clean=4_500_000)
    assert intervals(t, exited_by_itself=True) == {
        "launch_to_ready": 2.0, "launch_to_exit": 3.0, "exit_to_clean": 0.5, "launch_to_clean": 3.5}
    assert "launch_to_exit" not in intervals(t, exited_by_itself=False)


def test_intervals_refuse_missing_timestamps() -> None:
    with pytest.raises(BackendError, match="t_exit, t_clean"):
        intervals(Timestamps(t_launch=1, t_ready=2), exited_by_itself=True)


@pytest.fixture
def ctx(run_id: str, tmp_path: Path) -> Context:
    return Context(run_id=run_id, log_dir=tmp_path)


@pytest.mark.privileged
def test_startup_noop_gives_the_four_rows(ctx: Context, no_leftovers) -> None:
    case = Case("startup", Workload("noop"), timeout_s=30)
    rows = MEASUREMENTS["startup"](runtimes.get("bare"), case, ctx, 3, True)
    by = {r.metric: r for r in rows}
    assert set(by) == {"launch_to_ready", "launch_to_exit", "exit_to_clean", "launch_to_clean"}
    assert 0 < by["launch_to_ready"].value <= by["launch_to_exit"].value <= by["launch_to_clean"].value
    assert by["exit_to_clean"].value >= 0
    r = rows[0]
    assert (r.backend, r.workload, r.measurement, r.unit) == ("bare", "noop", "startup", "ms")
    assert (r.repetition, r.warmup, r.case, r.status) == (3, True, "startup/noop", "ok")


@pytest.mark.privileged
def test_startup_idle_is_stopped_and_reports_phases(ctx: Context, no_leftovers) -> None:
    # a limit makes bare create a cgroup, which it reports as a phase
    case = Case("startup", Workload("idle"), Limits(pids=64), timeout_s=30)
    by = {r.metric: r.value for r in MEASUREMENTS["startup"](runtimes.get("bare"), case, ctx, 0, False)}
    assert "launch_to_exit" not in by  # idle does not exit by itself
    assert {"launch_to_ready", "exit_to_clean", "launch_to_clean", "phase_cgroup_create"} <= set(by)
    assert 0 <= by["phase_cgroup_create"] <= by["launch_to_ready"] <= by["launch_to_clean"]
