"""density: N idle instances held at once, MemAvailable per instance, all cleaned up."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import psutil
import pytest

import runtimes
from harness.case import Case
from harness.measure import MEASUREMENTS
from harness.measure.context import Context
from harness.measure.density import settled_available
from runtimes.bare import BareBackend
from runtimes.base import BackendError, LaunchSpec
from runtimes.workloads import Workload
from tests.synth import dead_pid


def test_settle_returns_once_two_reads_agree() -> None:
    reads = iter([100 << 20, 90 << 20, 80 << 20, (80 << 20) + 1000, 0])
    assert settled_available(10, read=lambda: next(reads), interval=0.001) == (80 << 20) + 1000


def test_settle_gives_up_after_the_settle_time() -> None:
    counter = itertools.count()
    value = settled_available(0.05, read=lambda: next(counter) * (10 << 20), interval=0.01)
    assert value > 0  # kept changing: the last read is returned when time is up


def test_settle_zero_reads_once() -> None:
    assert settled_available(0, read=lambda: 42) == 42


def test_refreshed_mem_available_and_own_accounting() -> None:
    from harness.measure import accounting

    assert 0 < accounting.mem_available() < psutil.virtual_memory().total
    me = accounting.pages([os.getpid()])
    assert me.processes == 1 and 0 < me.private_dirty <= me.rss and 0 < me.pss <= me.rss
    assert accounting.pages([dead_pid()]).processes == 0


def test_pooled_fit_measures_each_ramp_from_its_own_start() -> None:
    from harness.measure.density import pooled_fit

    # three ramps of 1 MiB per instance whose starting levels differ by 50 MiB (host drift between ramps)
    ramps = [[base - 1.0 * k + 0.05 * ((k * 7) % 3) for k in range(17)] for base in (20000, 20050, 19950)]
    fit = pooled_fit(ramps)
    assert fit.slope == pytest.approx(1.0, abs=0.05) and fit.resolved and fit.hi - fit.lo < 0.2


@pytest.fixture
def ctx(run_id: str, tmp_path: Path) -> Context:
    return Context(run_id=run_id, log_dir=tmp_path)


def _sleepers() -> list[psutil.Process]:
    """Live idle workloads this test process started (bare instances are its children)."""
    return [p for p in psutil.Process().children(recursive=True)
            if "sleep" in " ".join(p.cmdline()) and p.status() != psutil.STATUS_ZOMBIE]


@pytest.mark.privileged
def test_density_gives_n_plus_one_points_and_a_slope(ctx: Context, no_leftovers) -> None:
    case = Case("density", Workload("idle"), options={"instances": 3}, settle_s=0.3, timeout_s=30)
    rows = MEASUREMENTS["density"](runtimes.get("bare"), case, ctx, 0, False)
    points = [r for r in rows if r.metric == "mem_available"]
    assert [r.params["instances"] for r in points] == [0, 1, 2, 3]
    assert all(r.value > 0 and r.unit == "MiB" for r in points)
    control = [r for r in rows if r.metric == "mem_available_control"]
    assert [r.params["instances"] for r in control] == [0, 1, 2, 3]  # the control ramp, same reads
    by = {r.metric: r for r in rows}
    assert {"density_slope", "density_control_slope", "attributable", "attributable_pss"} <= set(by)
    # four points give no slope interval (harness.stats.slope.MIN_POINTS): the row says so, no lo/hi rows
    assert "density_slope_lo" not in by and "too few points" in (by["density_slope"].note or "")
    assert by["density_slope"].unit == "MiB/instance" and by["attributable_pss"].value > 0
    # a single-repetition case is its own last repetition: the pooled slope is stored with it
    assert by["density_resolved"].value in (0.0, 1.0) and "density_pooled_slope" in by
    charged = [r for r in rows if r.metric == "mem_charged"]  # the second method: cgroup accounting
    assert [r.params["instances"] for r in charged] == [0, 1, 2, 3] and "density_charged_pooled" in by
    assert _sleepers() == []  # every instance was stopped


class FailingThird(BareBackend):
    """The real bare backend, except that its third launch fails."""

    def __init__(self) -> None:
        super().__init__()
        self.launched: list = []

    def launch(self, spec: LaunchSpec):
        if len(self.launched) == 2:
            raise BackendError("third launch refused (test)")
        inst = super().launch(spec)
        self.launched.append(inst)
        return inst


@pytest.mark.privileged
def test_density_cleans_up_every_instance_when_one_fails(ctx: Context, no_leftovers) -> None:
    backend = FailingThird()
    case = Case("density", Workload("idle"), options={"instances": 4}, settle_s=0, timeout_s=30)
    with pytest.raises(BackendError, match="third launch"):
        MEASUREMENTS["density"](backend, case, ctx, 0, False)
    assert len(backend.launched) == 2
    for inst in backend.launched:
        assert inst.times.t_clean is not None and inst.processes() == []
    assert _sleepers() == []
