"""runtimes.cgroups against the real kernel.

v1 tests run on hosts with the v1 controllers (this CI machine: hybrid).  The
cgroup2 *core* files (cgroup.procs, cgroup.events, cgroup.kill, cpu.stat) exist
on every cgroup2 mount, so the v2 code path is tested for real on the hybrid
host's ``/sys/fs/cgroup/unified`` via ``Cgroup.create(name, v=2)``.  Only the
v2 *controller* files (cpu.max, memory.max, pids.max) need a real v2 host:
those few tests are skipped elsewhere, by hardware class, not by privilege.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtimes import cgroups
from runtimes.base import Limits
from runtimes.cgroups import Cgroup, CgroupError
from runtimes.workloads import BUSYBOX
from tests.conftest import require

V1 = pytest.mark.skipif(cgroups.version() != 1, reason="v1 controllers: a v1/hybrid host")
V2_HOST = pytest.mark.skipif(cgroups.version() != 2, reason="v2 controllers: a cgroup v2 host")


# -- pure logic -------------------------------------------------------------------------
def test_bad_limits_and_names_are_refused_before_anything_is_made() -> None:
    for limits, msg in ((Limits(cpu_quota=0), "cpu quota must be > 0"),
                        (Limits(cpu_quota=0.5, cpu_period_us=500), "cpu period must be"),
                        (Limits(memory_mib=2), "memory limit must be >= 4"),
                        (Limits(pids=0), "pids limit must be >= 1")):
        with pytest.raises(CgroupError, match=msg):
            Cgroup.create("isobench-never-made", limits)
    with pytest.raises(CgroupError, match="must contain 'isobench'"):
        Cgroup.create("someone-elses")
    assert not [d for d in cgroups.find_leftovers() if d.name == "isobench-never-made"]


def test_own_paths_and_describe_read_this_host() -> None:
    own = cgroups.own_paths()
    assert all(p.startswith("/") for p in own.values())
    info = cgroups.describe()
    assert info["version"] == cgroups.version()
    if info["version"] == 1:
        assert set(cgroups.V1_CONTROLLERS) <= set(info["controllers"])  # type: ignore[arg-type]


# -- helpers -----------------------------------------------------------------------------
@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([BUSYBOX, "sleep", "60"])
    yield proc
    proc.kill()
    proc.wait()


def _spin(cg: Cgroup, seconds: float) -> int:
    """A busy loop run inside ``cg`` (joined before exec) for ``seconds``; returns its status."""
    files = [str(f) for f in cg.procs_files()]

    def join() -> None:
        for f in files:
            with open(f, "w") as fh:
                fh.write("0")

    return subprocess.run([BUSYBOX, "timeout", str(seconds), BUSYBOX, "sh", "-c", "while :; do :; done"],
                          preexec_fn=join, check=False).returncode


# -- v1 ---------------------------------------------------------------------------------
@V1
@pytest.mark.privileged
def test_v1_create_applies_limits_below_our_own_cgroups(run_id, no_leftovers) -> None:
    name = f"isobench-{run_id}-lim"
    cg = Cgroup.create(name, Limits(cpu_quota=0.5, memory_mib=64, pids=10, cpu_weight=10_000,
                                    cpu_burst_us=20_000), v=1)
    try:
        own = cgroups.own_paths()
        where = {c: m.path for m in cgroups.mounts() if m.version == 1 for c in m.controllers}
        assert set(cg.dirs) == set(cgroups.V1_CONTROLLERS)
        for ctrl, d in cg.dirs.items():  # directly below our own cgroup in each hierarchy
            assert d == where[ctrl] / own.get(ctrl, "/").lstrip("/") / name
        cpu, mem = cg.dirs["cpu"], cg.dirs["memory"]
        assert (cpu / "cpu.cfs_period_us").read_text().strip() == "100000"
        assert (cpu / "cpu.cfs_quota_us").read_text().strip() == "50000"
        assert (cpu / "cpu.shares").read_text().strip() == "102400"  # weight 10000 on v1's scale
        if (cpu / "cpu.cfs_burst_us").exists():  # Linux >= 5.14
            assert (cpu / "cpu.cfs_burst_us").read_text().strip() == "20000"
            assert cg.usage()["cpu_burst_us"] == 20_000
        assert int((mem / "memory.limit_in_bytes").read_text()) == 64 << 20
        if (mem / "memory.memsw.limit_in_bytes").exists():
            assert int((mem / "memory.memsw.limit_in_bytes").read_text()) == 64 << 20
        assert (cg.dirs["pids"] / "pids.max").read_text().strip() == "10"
        with pytest.raises(CgroupError, match="already exists"):  # never takes over a live one
            Cgroup.create(name, v=1)
        assert all(d.is_dir() for d in cg.dirs.values())
    finally:
        cg.remove()
    assert not any(d.exists() for d in cg.dirs.values())
    cg.remove()  # idempotent


@V1
@pytest.mark.privileged
def test_v1_attach_pids_usage_and_kill(run_id, no_leftovers, sleeper) -> None:
    cg = Cgroup.create(f"isobench-{run_id}-att", v=1)
    try:
        cg.attach(sleeper.pid)
        assert cg.pids() == [sleeper.pid]
        for ctrl, d in cg.dirs.items():
            assert f"{ctrl}:" in Path(f"/proc/{sleeper.pid}/cgroup").read_text() or ctrl == "cpuacct"
            assert str(sleeper.pid) in (d / "cgroup.procs").read_text().split()
        u = cg.usage()
        for key in ("cpu_usage_ns", "cpu_nr_periods", "mem_current_bytes", "mem_peak_bytes", "mem_failcnt",
                    "oom_kill", "pids_current", "pids_refused"):
            assert key in u, key
        assert u["pids_current"] == 1  # (memory stays charged where it was: v1 moves no charges)
        cg.kill()
        assert cg.pids() == [] and sleeper.wait(5) == -signal.SIGKILL
    finally:
        cg.remove()


@V1
@pytest.mark.privileged
def test_v1_counters_see_cpu_time_and_refused_forks(run_id, no_leftovers) -> None:
    cg = Cgroup.create(f"isobench-{run_id}-cnt", Limits(pids=3), v=1)
    try:
        _spin(cg, 0.3)
        assert cg.usage()["cpu_usage_ns"] > 50e6
        files = [str(f) for f in cg.procs_files()]

        def join() -> None:
            for f in files:
                with open(f, "w") as fh:
                    fh.write("0")

        subprocess.run([BUSYBOX, "sh", "-c", "for i in 1 2 3 4 5; do /bin/busybox sleep 1 & done; wait"],
                       preexec_fn=join, check=False, stderr=subprocess.DEVNULL)
        assert cg.usage()["pids_refused"] >= 1
    finally:
        cg.remove()


@V1
@pytest.mark.privileged
def test_v1_leftovers_are_found_and_removed(run_id, no_leftovers, sleeper) -> None:
    cg = Cgroup.create(f"isobench-{run_id}-left", v=1)
    cg.attach(sleeper.pid)
    found = [d for d in cgroups.find_leftovers() if d.name == cg.name]
    assert sorted(found) == sorted(set(cg.dirs.values()))
    for d in found:
        cgroups.remove_dir(d)
    assert sleeper.wait(5) == -signal.SIGKILL
    assert not any(d.exists() for d in cg.dirs.values())


# -- v2 core files, on this host's cgroup2 mount ---------------------------------------------
@pytest.fixture
def v2_core() -> None:
    require(cgroups.v2_mount() is not None, "no cgroup2 mount (kernel without cgroup2?)")


@pytest.mark.privileged
def test_v2_procs_events_and_kill(v2_core, run_id, no_leftovers, sleeper) -> None:
    cg = Cgroup.create(f"isobench-{run_id}-v2", v=2)
    try:
        d = cg.dirs[""]
        assert cg.procs_files() == [d / "cgroup.procs"]
        fd = cg.dir_fd()
        try:
            assert os.path.samestat(os.fstat(fd), os.stat(d))
        finally:
            os.close(fd)
        cg.attach(sleeper.pid)
        assert cg.pids() == [sleeper.pid]
        assert "populated 1" in (d / "cgroup.events").read_text()
        cg.kill()  # through cgroup.kill
        assert sleeper.wait(5) == -signal.SIGKILL
        deadline = time.monotonic() + 5
        while "populated 0" not in (d / "cgroup.events").read_text() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert "populated 0" in (d / "cgroup.events").read_text()
    finally:
        cg.remove()
    assert not cg.dirs[""].exists()
    cg.remove()


@pytest.mark.privileged
def test_v2_cpu_stat_counts_usage(v2_core, run_id, no_leftovers) -> None:
    cg = Cgroup.create(f"isobench-{run_id}-v2cpu", v=2)
    try:
        _spin(cg, 0.3)
        assert cg.usage()["cpu_usage_ns"] > 50e6
    finally:
        cg.remove()


@pytest.mark.privileged
def test_v2_leftover_is_found_and_removed(v2_core, run_id, no_leftovers, sleeper) -> None:
    cg = Cgroup.create(f"isobench-{run_id}-v2left", v=2)
    cg.attach(sleeper.pid)
    assert [d for d in cgroups.find_leftovers() if d.name == cg.name] == [cg.dirs[""]]
    cgroups.remove_dir(cg.dirs[""])
    assert sleeper.wait(5) == -signal.SIGKILL and not cg.dirs[""].exists()


@pytest.mark.privileged
def test_dir_fd_needs_v2(run_id, no_leftovers) -> None:
    cg = Cgroup.create(f"isobench-{run_id}-fd", v=1 if cgroups.version() == 1 else 2)
    try:
        if cg.version == 1:
            with pytest.raises(CgroupError, match="needs cgroup v2"):
                cg.dir_fd()
        else:
            os.close(cg.dir_fd())
    finally:
        cg.remove()


# -- sub-cgroups a workload made: killed and removed with ours ---------------------------------
@pytest.mark.privileged
@pytest.mark.parametrize("v", [1, 2])
def test_remove_kills_and_removes_sub_cgroups_the_workload_made(v, run_id, no_leftovers, sleeper) -> None:
    if v == 1:
        require(cgroups.version() == 1, "v1 controllers: a v1/hybrid host")
    else:
        require(cgroups.v2_mount() is not None, "no cgroup2 mount (kernel without cgroup2?)")
    cg = Cgroup.create(f"isobench-{run_id}-nest{v}", v=v)
    try:
        inner = [d / "workload-made" / "deeper" for d in cg.unique_dirs()]
        for d in inner:
            d.mkdir(parents=True)
            (d / "cgroup.procs").write_text(str(sleeper.pid))
        assert cg.pids() == [sleeper.pid]  # seen below our cgroup, not only in it
    finally:
        cg.remove()
    assert sleeper.wait(5) == -signal.SIGKILL
    assert not any(d.exists() for d in cg.unique_dirs())


# -- v2 controller files: their logic on a stand-in tree, everywhere -----------------------------
def test_v2_limits_and_counters_on_a_stand_in_tree(tmp_path) -> None:
    """What the v2 code writes and how it reads counters, on plain files shaped like a v2 cgroup.

    The real kernel files are exercised by the next test on a v2 host (``-m v2host``)."""
    d = tmp_path / "isobench-fake"
    d.mkdir()
    for f in ("cpu.max", "cpu.weight", "memory.max", "memory.swap.max", "pids.max"):
        (d / f).write_text("max\n")
    cg = Cgroup("isobench-fake", 2, {"": d})
    with pytest.raises(CgroupError, match="no cpu.max.burst"):  # an old kernel: refused, not dropped
        cg.apply(Limits(cpu_quota=0.25, cpu_burst_us=5000))
    (d / "cpu.max.burst").write_text("0\n")
    cg.apply(Limits(cpu_quota=0.25, cpu_period_us=10_000, memory_mib=64, pids=10, cpu_weight=10_000,
                    cpu_burst_us=5000))
    assert (d / "cpu.max").read_text() == "2500 10000"
    assert (d / "cpu.weight").read_text() == "10000" and (d / "cpu.max.burst").read_text() == "5000"
    assert (d / "memory.max").read_text() == str(64 << 20)
    assert (d / "memory.swap.max").read_text() == "0"
    assert (d / "pids.max").read_text() == "10"
    (d / "cpu.stat").write_text("usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n"
                                "nr_periods 7\nnr_throttled 3\nthrottled_usec 250\n")
    (d / "memory.current").write_text("4096\n")
    (d / "memory.peak").write_text("8192\n")
    (d / "memory.events").write_text("low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n")
    (d / "pids.current").write_text("3\n")
    (d / "pids.events").write_text("max 2\n")
    assert cg.usage() == {
        "cpu_usage_ns": 1_500_000, "cpu_nr_periods": 7, "cpu_nr_throttled": 3, "cpu_throttled_ns": 250_000,
        "mem_current_bytes": 4096, "mem_peak_bytes": 8192, "pids_current": 3,
        "mem_failcnt": 4, "oom_events": 1, "oom_kill": 1, "pids_refused": 2,
        "cpu_quota_us": 2500, "cpu_period_us": 10_000, "cpu_burst_us": 5000,  # the bandwidth applied, read back
    }
    assert cg.cpu_counters() == {k: v for k, v in cg.usage().items()
                                 if k.startswith("cpu_") and k not in ("cpu_quota_us", "cpu_period_us", "cpu_burst_us")}


def test_v2_limit_without_its_controller_is_a_clear_error(tmp_path) -> None:
    d = tmp_path / "isobench-fake"
    d.mkdir()
    (d / "memory.max").write_text("max\n")  # only memory was delegated (as in some sandboxes)
    cg = Cgroup("isobench-fake", 2, {"": d})
    cg.apply(Limits(memory_mib=64))
    with pytest.raises(CgroupError, match="the pids controller is not delegated"):
        cg.apply(Limits(pids=10))
    with pytest.raises(CgroupError, match="the cpu controller is not delegated"):
        cg.apply(Limits(cpu_quota=0.5))


# -- v2 controllers: a v2 host only (deselected elsewhere: `pytest -m v2host` on one) ----------
@pytest.mark.v2host
@V2_HOST
@pytest.mark.privileged
def test_v2_controller_limits_and_counters(run_id, no_leftovers) -> None:
    cg = Cgroup.create(f"isobench-{run_id}-v2lim", Limits(cpu_quota=0.5, memory_mib=64, pids=10), v=2)
    try:
        d = cg.dirs[""]
        assert (d / "cpu.max").read_text().split() == ["50000", "100000"]
        assert int((d / "memory.max").read_text()) == 64 << 20
        assert (d / "pids.max").read_text().strip() == "10"
        _spin(cg, 0.3)
        u = cg.usage()
        assert u["cpu_usage_ns"] > 0 and "cpu_nr_throttled" in u and "oom_kill" in u and "pids_refused" in u
    finally:
        cg.remove()


def test_v2_base_looks_past_the_harness_leaf(monkeypatch) -> None:
    for own, base in (("/a/b/isobench-harness", "/a/b"), ("/isobench-harness", "/"), ("/a/b", "/a/b"), ("/", "/")):
        monkeypatch.setattr(cgroups.host, "own_paths", lambda own=own: {"": own})
        assert cgroups.v2_base() == base
