"""memory: host footprint and overhead over the memory reference, on the real host-process backend."""

from __future__ import annotations

from pathlib import Path

import pytest

import runtimes
from harness.case import Case
from harness.measure import MEASUREMENTS, accounting
from harness.measure.common import reported
from harness.measure.context import Context
from harness.measure.memory import reference_extra
from runtimes.workloads import Workload


def test_reported_reads_the_exact_key_only() -> None:
    assert reported({"guest_mem_total": "256.0"}, "guest_mem_total") == 256.0
    assert reported({"guest_mem_total": "256.0"}, "MemTotal") is None  # no guessing at spellings
    assert reported({"guest_mem_total": "lots"}, "guest_mem_total") is None
    assert reported({}, "guest_mem_total") is None


def test_the_reference_runs_the_rootfs_copy_with_the_isolated_environment() -> None:
    from runtimes.workloads import ISOLATED_ENV

    case = Case("memory", Workload("idle"))
    extra = reference_extra(case)
    assert extra["argv"][0].endswith("/bin/busybox") and extra["argv"][0] != "/bin/busybox"
    assert extra["argv"][1:] == Workload("idle").argv()[1:] and extra["env"] == ISOLATED_ENV


def test_pages_skip_vanished_processes() -> None:
    import os

    fp = accounting.pages([os.getpid(), 2**22 + 1])  # beyond pid_max: never a live process
    assert fp.processes == 1 and fp.rss > 0 and fp.uss > 0 and fp.pss > 0


@pytest.fixture
def ctx(run_id: str, tmp_path: Path) -> Context:
    return Context(run_id=run_id, log_dir=tmp_path)


@pytest.mark.privileged
def test_bare_has_about_zero_overhead(ctx: Context, no_leftovers) -> None:
    case = Case("memory", Workload("idle"), settle_s=0.3, timeout_s=30)
    reference = runtimes.get(runtimes.reference())
    rows = MEASUREMENTS["memory"](reference, case, ctx, 0, False)
    by = {r.metric: r for r in rows}
    assert {"pss", "uss", "rss", "anon", "private_dirty", "pss_overhead", "uss_overhead",
            "private_dirty_overhead"} <= set(by)
    assert all(r.unit == "MiB" for r in rows)
    assert 0 < by["uss"].value <= by["rss"].value and 0 < by["pss"].value <= by["rss"].value
    assert 0 < by["private_dirty"].value <= by["rss"].value
    # the reference against itself: no overhead by construction, and no second launch
    assert by["pss_overhead"].value == 0 and by["uss_overhead"].value == 0
    before = next(ctx._counter)
    MEASUREMENTS["memory"](reference, case, ctx, 1, False)
    assert next(ctx._counter) == before + 2  # one launch, no extra reference launch


@pytest.mark.privileged
def test_other_backends_get_a_reference_launch_per_repetition(ctx: Context, no_leftovers) -> None:
    case = Case("memory", Workload("idle"), settle_s=0.2, timeout_s=30)
    unshare = runtimes.get("unshare")
    for rep in (0, 1):  # before, then after: two launches each
        before = next(ctx._counter)
        rows = MEASUREMENTS["memory"](unshare, case, ctx, rep, False)
        assert next(ctx._counter) == before + 3
        by = {r.metric: r for r in rows}
        assert abs(by["pss_overhead"].value) < 5  # unshare(1) holds one more small process
