"""memory: host footprint and overhead over bare, on the real bare backend."""

from __future__ import annotations

from pathlib import Path

import pytest

import runtimes
from harness.measure import MEASUREMENTS
from harness.measure.common import MIB, Footprint, footprint, parse_size
from harness.measure.context import Context
from harness.measure.memory import guest_memory, median_footprint
from harness.scenario import Case
from runtimes.workloads import Workload
from tests.conftest import is_root, require


def test_parse_size_accepts_meminfo_forms() -> None:
    assert parse_size("262144 kB") == 256 * MIB
    assert parse_size(262144) == 256 * MIB  # bare numbers are kB, as /proc/meminfo writes them
    assert parse_size("256M") == parse_size("256 MiB") == 256 * MIB
    assert parse_size("1 G") == 1024 * MIB
    assert parse_size("4096", default_unit="b") == 4096
    assert parse_size("lots") is None and parse_size(None) is None and parse_size(True) is None


def test_guest_memory_is_tolerant_of_spelling() -> None:
    # what the vm guest's init reports (kB as /proc/meminfo counts them)
    assert guest_memory({"guest_mem_total_kib": "262144", "guest_mem_available_kib": "200704"}) == (
        256 * MIB, 60 * MIB)
    assert guest_memory({"MemTotal": "262144 kB", "MemAvailable": "200704 kB"}) == (256 * MIB, 60 * MIB)
    assert guest_memory({"mem_total_kb": 1024, "mem_free_kb": 512}) == (MIB, MIB // 2)
    assert guest_memory({"MemTotal": "1024 kB"}) is None  # total alone says nothing about use
    assert guest_memory({}) is None


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
    require(is_root(), "needs root (smaps of every process)")
    case = Case("memory", Workload("idle"), settle_s=0.3, timeout_s=30)
    rows = MEASUREMENTS["memory"](runtimes.get("bare"), case, ctx, 0, False)
    by = {r.metric: r for r in rows}
    assert set(by) == {"pss", "uss", "rss", "pss_overhead", "uss_overhead"}
    assert all(r.unit == "MiB" for r in rows)
    assert 0 < by["uss"].value <= by["rss"].value and 0 < by["pss"].value <= by["rss"].value
    assert abs(by["pss_overhead"].value) < 2 and abs(by["uss_overhead"].value) < 2
    # the bare reference is measured once per run and then reused
    cached = [k for k in ctx.cache if k[0] == "memory.bare_reference"]
    assert len(cached) == 1
    before = next(ctx._counter)
    MEASUREMENTS["memory"](runtimes.get("bare"), case, ctx, 1, False)
    assert next(ctx._counter) == before + 2  # one launch, no new reference launches
