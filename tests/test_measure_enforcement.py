"""cpu_quota, mem_limit, pids_limit: the limits as the real bare backend's cgroups enforce them."""

from __future__ import annotations

from pathlib import Path

import pytest

import runtimes
from harness.case import Case
from harness.measure import MEASUREMENTS
from harness.measure.common import Rows, enforcement_note
from harness.measure.context import Context
from harness.measure.cpu import cpu_delivered, cpu_expected, cpu_window
from harness.measure.enforcement import _mem_rows
from harness.measure.watch import delta
from runtimes.bare import BareBackend
from runtimes.base import BackendError, Limits
from runtimes.declaration import CGROUP_ENFORCEMENT, Declaration
from runtimes.workloads import Workload

MS = 1_000_000


# -- pure helpers ------------------------------------------------------------------
def test_cpu_delivered_from_two_readings() -> None:
    before, after = {"cpu_usage_ns": 5e9}, {"cpu_usage_ns": 5e9 + 1e9}
    assert cpu_delivered(before, 10 * 10**9, after, 12 * 10**9) == pytest.approx(0.5)
    with pytest.raises(BackendError, match="cpu_usage_ns"):
        cpu_delivered({}, 0, after, 10**9)
    with pytest.raises(ValueError, match="empty"):
        cpu_delivered(before, 10, after, 10)


def test_delta_needs_both_readings() -> None:
    assert delta({"a": 3}, {"a": 10}, "a") == 7
    assert delta({}, {"a": 10}, "a") is None


def test_cpu_expected_is_the_tightest_bound() -> None:
    assert cpu_expected(0.5, threads=2, cores=2) == 0.5
    assert cpu_expected(4.0, threads=2, cores=16) == 2.0  # two threads cannot use four CPUs
    assert cpu_expected(4.0, threads=8, cores=2) == 2.0  # nor can two cores
    assert cpu_expected(None, threads=8, cores=16, vcpus=1) == 1.0  # a 1-vCPU guest


def test_cpu_window_stays_inside_the_run() -> None:
    lead, end = cpu_window(3.0)
    assert 0 < lead < end < 3.0
    with pytest.raises(ValueError, match="too short"):
        cpu_window(0.3)


def _rows() -> Rows:
    case = Case("mem_limit", Workload("mem", {"mib": 64}), Limits(memory_mib=32), {"limit_mib": 32, "mib": 64})
    return Rows(BareBackend(), case, Context(run_id="u", log_dir=Path("/nonexistent")), 0, False)


def test_mem_rows_from_cgroup_counters() -> None:
    reads = [(10 * MS, {"oom_kill": 0, "mem_current_bytes": 16 << 20, "mem_failcnt": 0}),
             (20 * MS, {"oom_kill": 1, "mem_current_bytes": 32 << 20, "mem_failcnt": 3}),
             (30 * MS, {"oom_kill": 1, "mem_current_bytes": 1 << 20, "mem_failcnt": 3})]
    by = {r.metric: r.value for r in _mem_rows(_rows(), 32, 5 * MS, reads, {})}
    assert by == {"oom_killed": 1, "oom_time_ms": 15.0, "mem_peak": 32.0, "mem_limit": 32, "mem_failcnt": 3}


def test_mem_rows_without_oom() -> None:
    reads = [(10 * MS, {"oom_kill": 0, "mem_peak_bytes": 8 << 20})]
    by = {r.metric: r.value for r in _mem_rows(_rows(), 32, 5 * MS, reads, {})}
    assert by["oom_killed"] == 0 and "oom_time_ms" not in by and by["mem_peak"] == 8.0


def test_mem_rows_from_a_guest_report_alone() -> None:
    rows = _mem_rows(_rows(), 32, 0, [(1, {})], {"guest_oom_kill": "2"})
    killed = next(r for r in rows if r.metric == "oom_killed")
    assert killed.value == 1 and "guest" in (killed.note or "")


def test_mem_rows_without_any_counter_fail_clearly() -> None:
    with pytest.raises(BackendError, match="no OOM counter"):
        _mem_rows(_rows(), 32, 0, [(1, {})], {})


def test_enforcement_note_only_when_different() -> None:
    class Guest(BareBackend):
        name = "test-guest"

    unregister = runtimes.register(Declaration(
        "test-guest", Guest, "a test backend", "#000000",
        enforcement={**CGROUP_ENFORCEMENT, "memory": "guest memory size"}))
    try:
        assert enforcement_note(BareBackend(), "memory") is None
        assert enforcement_note(Guest(), "memory") == "guest memory size"
        assert enforcement_note(Guest(), "cpu") is None
    finally:
        unregister()


# -- on the real bare backend ------------------------------------------------------------
@pytest.fixture
def ctx(run_id: str, tmp_path: Path) -> Context:
    return Context(run_id=run_id, log_dir=tmp_path)


def _by(rows) -> dict[str, float]:
    return {r.metric: r.value for r in rows}


@pytest.mark.privileged
@pytest.mark.slow
def test_half_cpu_quota_is_delivered(ctx: Context, no_leftovers) -> None:
    # Two threads, so the quota binds even when another job on this shared machine
    # takes one core; the ±10 % band absorbs the rest of that noise.
    case = Case("cpu_quota", Workload("cpu", {"threads": 2, "seconds": 2.0}), Limits(cpu_quota=0.5),
                {"quota": 0.5, "threads": 2}, timeout_s=30)
    by = _by(MEASUREMENTS["cpu_quota"](runtimes.get("bare"), case, ctx, 0, False))
    assert by["cpu_expected"] == 0.5 and by["cpu_quota_applied"] == 0.5  # read back from the cgroup
    assert by["nr_periods"] >= 10 and "throttled_share" in by and by["window_s"] > 0.5
    assert by["cpu_ratio"] <= 1.03  # never more than the quota, however busy the host
    if by["throttled_share"] >= 0.9:  # the quota, not other load, held it back: it got the quota
        assert by["cpu_ratio"] == pytest.approx(1.0, abs=0.03)
        assert by["throttled_ms"] > 0 and 0.8 <= by["period_ratio_p50"] <= 1.5


@pytest.mark.privileged
def test_cpu_quota_without_a_cpu_counter_fails_clearly(ctx: Context, no_leftovers) -> None:
    # bare without limits makes no cgroup, so usage() has no CPU counter
    case = Case("cpu_quota", Workload("cpu", {"threads": 1, "seconds": 1.0}), timeout_s=30)
    with pytest.raises(BackendError, match="no CPU counter"):
        MEASUREMENTS["cpu_quota"](runtimes.get("bare"), case, ctx, 0, False)


@pytest.mark.privileged
def test_allocation_beyond_the_limit_is_oom_killed(ctx: Context, no_leftovers) -> None:
    case = Case("mem_limit", Workload("mem", {"mib": 64, "seconds": 2.0}), Limits(memory_mib=32),
                {"limit_mib": 32, "mib": 64}, timeout_s=30)
    by = _by(MEASUREMENTS["mem_limit"](runtimes.get("bare"), case, ctx, 0, False))
    assert by["oom_killed"] == 1 and by["oom_time_ms"] >= 0
    assert by["mem_limit"] == 32 and by["mem_peak"] <= 32.5


@pytest.mark.privileged
def test_allocation_below_the_limit_survives(ctx: Context, no_leftovers) -> None:
    case = Case("mem_limit", Workload("mem", {"mib": 16, "seconds": 1.0}), Limits(memory_mib=64),
                {"limit_mib": 64, "mib": 16}, timeout_s=30)
    by = _by(MEASUREMENTS["mem_limit"](runtimes.get("bare"), case, ctx, 0, False))
    assert by["oom_killed"] == 0 and "oom_time_ms" not in by
    assert 16 <= by["mem_peak"] < 64


@pytest.mark.privileged
def test_pids_limit_refuses_forks(ctx: Context, no_leftovers) -> None:
    case = Case("pids_limit", Workload("pids", {"count": 20, "seconds": 2.0}), Limits(pids=8),
                {"limit": 8, "count": 20}, timeout_s=30)
    by = _by(MEASUREMENTS["pids_limit"](runtimes.get("bare"), case, ctx, 0, False))
    assert 1 < by["pids_reached"] <= 8 and by["pids_limit"] == 8
    assert by["pids_refused"] >= 1 and by["pids_peak"] <= 8
