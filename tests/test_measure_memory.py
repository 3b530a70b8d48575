"""memory: host footprint and overhead over the memory reference, on the real host-process backend."""

from __future__ import annotations

from pathlib import Path

import pytest

import runtimes
from harness.measure import MEASUREMENTS
from harness.measure.common import Footprint, footprint, reported
from harness.measure.context import Context
from harness.measure.memory import median_footprint
from harness.scenario import Case
from runtimes.workloads import Workload


def test_reported_reads_the_exact_key_only() -> None:
    assert reported({"guest_mem_total": "256.0"}, "guest_mem_total") == 256.0
    assert reported({"guest_mem_total": "256.0"}, "MemTotal") is None  # no guessing at spellings
    assert reported({"guest_mem_total": "lots"}, "guest_mem_total") is None
    assert reported({}, "guest_mem_total") is None


def test_median_footprint() -> None:
    m = median_footprint([Footprint(1, 2, 3, 1), Footprint(5, 6, 7, 1), Footprint(3, 4, 5, 1)])
    assert m == Footprint(3, 4, 5, 1)


def test_footprint_skips_vanished_processes() -> None:
    import os

    fp = footprint([os.getpid(), 2**22 + 1])  # beyond pid_max: never a live process
    assert fp.processes == 1 and fp.rss > 0 and fp.uss > 0


@pytest.fixture
def ctx(run_id: str, tmp_path: Path) -> Context:
    return Context(run_id=run_id, log_dir=tmp_path)


@pytest.mark.privileged
def test_bare_has_about_zero_overhead(ctx: Context, no_leftovers) -> None:
    case = Case("memory", Workload("idle"), settle_s=0.3, timeout_s=30)
    reference = runtimes.get(runtimes.memory_reference())
    rows = MEASUREMENTS["memory"](reference, case, ctx, 0, False)
    by = {r.metric: r for r in rows}
    assert set(by) == {"pss", "uss", "rss", "pss_overhead", "uss_overhead"}
    assert all(r.unit == "MiB" for r in rows)
    assert 0 < by["uss"].value <= by["rss"].value and 0 < by["pss"].value <= by["rss"].value
    assert abs(by["pss_overhead"].value) < 2 and abs(by["uss_overhead"].value) < 2
    # the bare reference is measured once per run and then reused
    cached = [k for k in ctx.cache if k[0] == "memory.reference"]
    assert len(cached) == 1
    before = next(ctx._counter)
    MEASUREMENTS["memory"](reference, case, ctx, 1, False)
    assert next(ctx._counter) == before + 2  # one launch, no new reference launches
