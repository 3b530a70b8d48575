"""The floor: each kernel primitive a container launch is made of, timed alone.

``harness.floor.floor_ms`` turns the benchmarks marked ``extra_info["floor"]``
into a lower bound of a container's launch→ready: each primitive by its fastest
round, the critical path summed, overlapping steps by their maximum, avoidable
steps (mount plan, pivot_root, a cold cgroup migration) counted 0 (see
``harness.floor.ROLES``).  Run with ``nox -s microbench``
(``pytest benchmarks --benchmark-only --benchmark-autosave``).

Rounds are few (``ISOBENCH_BENCH_ROUNDS``, default 40): the whole run takes
well under two minutes on 2 cores.
"""

from __future__ import annotations

import fcntl
import os
import time

import pytest

from benchmarks.primitives import CgroupDirs, Worker, floor_info, run_worker
from runtimes import cgroups
from runtimes import syscalls as sc
from runtimes.container import mounts, namespaces
from runtimes.workloads import MARKER_FD, READY, Workload

ROUNDS = int(os.environ.get("ISOBENCH_BENCH_ROUNDS", "40"))
#: pause before an "isolated" cgroup attach: a v1/v2 attach after a quiet spell
#: waits for an RCU grace period (HOST-NOTES), which back-to-back ones skip
ISOLATION_S = 0.05


# -- the pipe round trip every Worker measurement contains ----------------------------------------
def test_roundtrip(benchmark) -> None:
    floor_info(benchmark, "roundtrip", method="baseline", in_floor=False)
    run_worker(benchmark, Worker(lambda: None), ROUNDS)


# -- fork + exec of the workload, up to its ready marker --------------------------------------------
def test_fork_exec_ready(benchmark) -> None:
    """posix_spawn of ``busybox sh -c noop`` with the marker pipe on fd 3, until READY arrives."""
    argv = Workload("noop").argv()
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    state: dict[str, int] = {}

    def setup() -> None:
        finish()
        r, w = os.pipe()
        high = fcntl.fcntl(w, fcntl.F_DUPFD_CLOEXEC, 64)  # so dup2 onto 3 is a real dup
        os.close(w)
        state.update(r=r, w=high)

    def spawn() -> None:
        pid = os.posix_spawn(argv[0], argv, env, file_actions=[(os.POSIX_SPAWN_DUP2, state["w"], MARKER_FD)])
        os.close(state["w"])
        state["pid"] = pid
        line = b""
        while not line.endswith(b"\n"):
            chunk = os.read(state["r"], 64)
            if not chunk:
                raise RuntimeError(f"workload exited without {READY!r}")
            line += chunk
        assert line.decode().strip() == READY

    def finish() -> None:
        if "pid" in state:
            os.waitpid(state.pop("pid"), 0)
        if "r" in state:
            os.close(state.pop("r"))

    floor_info(benchmark, "fork_exec_ready", method="direct")
    try:
        benchmark.pedantic(spawn, setup=setup, rounds=ROUNDS, warmup_rounds=1)
    finally:
        finish()


# -- one unshare per namespace kind the container creates -------------------------------------------
@pytest.mark.parametrize("kind", namespaces.DEFAULT)
def test_unshare(benchmark, kind: str, root) -> None:
    flag = namespaces.KINDS[kind]
    floor_info(benchmark, f"unshare_{kind}", method="worker")
    run_worker(benchmark, Worker(lambda: sc.unshare(flag)), ROUNDS)


def test_loopback_up(benchmark, root) -> None:
    """Bringing ``lo`` up in a fresh network namespace, as the container's init does."""
    request = namespaces.loopback_up_request()
    floor_info(benchmark, "loopback_up", method="worker")
    run_worker(benchmark, Worker(lambda: namespaces.loopback_up(request),
                                 prepare=lambda: sc.unshare(sc.CLONE_NEWNET)), ROUNDS)


# -- the mount plan and pivot_root -------------------------------------------------------------------
def test_mount_plan(benchmark, rootfs_dir) -> None:
    """Every step of the container's mount plan except pivot_root, in a fresh mount namespace."""
    plan = mounts.plan(rootfs_dir)
    steps = [op for op in plan if not isinstance(op, mounts.PivotRoot)]
    floor_info(benchmark, "mount_plan", method="worker", steps=len(steps))
    run_worker(benchmark, Worker(lambda: mounts.execute(steps), prepare=lambda: sc.unshare(sc.CLONE_NEWNS)),
               ROUNDS)


def test_pivot_root(benchmark, rootfs_dir) -> None:
    plan = mounts.plan(rootfs_dir)
    pivot = [op for op in plan if isinstance(op, mounts.PivotRoot)]
    before = [op for op in plan if not isinstance(op, mounts.PivotRoot)]
    assert len(pivot) == 1

    def prepare() -> None:
        sc.unshare(sc.CLONE_NEWNS)
        mounts.execute(before)

    floor_info(benchmark, "pivot_root", method="worker")
    run_worker(benchmark, Worker(pivot[0].execute, prepare=prepare), ROUNDS)


# -- cgroups: create, place, remove ---------------------------------------------------------------------
def _cgroup_case(benchmark, dirs: CgroupDirs, what: str, isolated: bool) -> None:
    def setup() -> None:
        dirs.rmdir()
        if what in ("place", "remove"):
            dirs.mkdir()
        if what == "place":
            dirs.fork_child()
        if isolated:
            time.sleep(ISOLATION_S)

    target = {"create": dirs.mkdir, "place": dirs.place, "remove": dirs.remove}[what]
    try:
        benchmark.pedantic(target, setup=setup, rounds=ROUNDS, warmup_rounds=1)
    finally:
        dirs.rmdir()


@pytest.mark.parametrize("what", ["create", "place", "remove"])
def test_cgroup_v1(benchmark, what: str, cgroup_v1_dirs: CgroupDirs) -> None:
    """mkdir / attach a process / rmdir in the cpu, cpuacct, memory and pids hierarchies.

    ``place`` is isolated (ISOLATION_S of quiet before it), as a launch sees it."""
    floor_info(benchmark, f"cgroup_{what}", method="direct", hierarchy="v1",
               in_floor=cgroups.version() == 1, teardown=what == "remove",
               controllers=len(cgroup_v1_dirs.dirs))
    _cgroup_case(benchmark, cgroup_v1_dirs, what, isolated=what == "place")


def test_cgroup_v1_place_back_to_back(benchmark, cgroup_v1_dirs: CgroupDirs) -> None:
    """The same attach with no pause: what the RCU grace period costs is the difference."""
    floor_info(benchmark, "cgroup_place_back_to_back", method="direct", hierarchy="v1", in_floor=False)
    _cgroup_case(benchmark, cgroup_v1_dirs, "place", isolated=False)


@pytest.mark.parametrize("what", ["create", "place", "remove"])
def test_cgroup_v2_core(benchmark, what: str, cgroup_v2_dirs: CgroupDirs) -> None:
    """The same on the cgroup2 hierarchy (on a hybrid host: its core files only, no controllers)."""
    floor_info(benchmark, f"cgroup_{what}", method="direct", hierarchy="v2",
               in_floor=cgroups.version() == 2, teardown=what == "remove")
    _cgroup_case(benchmark, cgroup_v2_dirs, what, isolated=what == "place")


# -- the VM side: rendering the domain XML --------------------------------------------------------
def test_qemu_argv_render(benchmark) -> None:
    qemu = pytest.importorskip("runtimes.vm.qemu")
    machine = pytest.importorskip("runtimes.vm.machine")
    m = machine.Machine(name="isobench-bench-0", accel="tcg", kernel="/boot/vmlinuz", initrd="/tmp/initrd")
    floor_info(benchmark, "qemu_argv_render", method="direct", in_floor=False)
    assert "-kernel" in benchmark(qemu.qemu_argv, m, "qemu-system-x86_64")


def test_domain_xml_render(benchmark) -> None:
    domain = pytest.importorskip("runtimes.vm.domain")
    machine = pytest.importorskip("runtimes.vm.machine")
    m = machine.Machine(name="isobench-bench-0", accel="tcg", kernel="/boot/vmlinuz", initrd="/tmp/initrd",
                        cpu_quota=0.5, labels=(("run_id", "bench"),))
    floor_info(benchmark, "domain_xml_render", method="direct", in_floor=False)
    xml = benchmark(domain.render, m)
    assert "isobench-bench-0" in xml
