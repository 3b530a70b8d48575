"""Real cgroup v2 end to end: run in CI inside a v2 guest (tests/test_matrix_guest.py), on v2 hosts with -m v2host.

What the v2 code does against the kernel's own files: memory.max with memory.swap.max, a
populated tree (a sub-cgroup with a live process) killed and removed deepest first, and the
container backend's cgroup namespace, limits and cleanup.
"""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from runtimes import cgroups
from runtimes.base import LaunchSpec, Limits
from runtimes.cgroups import Cgroup
from runtimes.workloads import BUSYBOX, Workload
from tests.conftest import is_root, require

pytestmark = [pytest.mark.v2host, pytest.mark.privileged]


@pytest.fixture
def v2() -> None:
    require(is_root() and cgroups.version() == 2, "needs root on a cgroup v2 host (CI: inside a v2 guest)")


def test_a_populated_v2_tree_is_killed_and_removed_deepest_first(v2, run_id, no_leftovers) -> None:
    cg = Cgroup.create(f"isobench-{run_id}-tree", Limits(memory_mib=64, pids=8), v=2)
    d = cg.dirs[""]
    try:
        assert int((d / "memory.max").read_text()) == 64 << 20
        assert (d / "memory.swap.max").read_text().strip() == "0"  # the limit is not escaped into swap
        sub = d / "isobench-sub"
        sub.mkdir()
        procs = str(sub / "cgroup.procs")

        def join() -> None:
            with open(procs, "w") as fh:
                fh.write("0")

        child = subprocess.Popen([BUSYBOX, "sleep", "600"], preexec_fn=join)
        assert child.pid in cg.pids()  # counted through the sub-cgroup
        cg.kill()
        assert child.wait(timeout=30) != 0
    finally:
        cg.remove()
    assert not d.exists() and not (d / "isobench-sub").exists()


def test_the_container_on_v2_has_its_cgroup_namespace_limits_and_leaves_nothing(v2, run_id, no_leftovers) -> None:
    from runtimes.container.backend import ContainerBackend

    b = ContainerBackend()
    try:
        spec = LaunchSpec(Workload("idle"), run_id, f"isobench-{run_id}-0",
                          Limits(cpu_quota=0.5, memory_mib=64, pids=16), timeout_s=60)
        with b.launch(spec) as inst:
            inst.wait_ready(120)
            assert inst.cgroup is not None and inst.proc is not None
            d = inst.cgroup.dirs[""]
            assert (d / "cpu.max").read_text().split() == ["50000", "100000"]
            assert int((d / "memory.max").read_text()) == 64 << 20
            assert (d / "pids.max").read_text().strip() == "16"
            # its own cgroup namespace: not ours
            assert os.stat(f"/proc/{inst.proc.pid}/ns/cgroup").st_ino != os.stat("/proc/self/ns/cgroup").st_ino
            assert inst.proc.pid in inst.cgroup.pids()
            inst.stop()
        deadline = time.monotonic() + 30
        while d.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not d.exists(), f"{d} outlived its container"
    finally:
        b.close()
