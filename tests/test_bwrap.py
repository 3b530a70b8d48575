"""bwrap for real: the container's namespaces over the same rootfs, read-only, with the marker."""

from __future__ import annotations

import pytest

import runtimes
from runtimes import rootfs
from runtimes.base import LaunchSpec
from runtimes.bwrap import NAMESPACE_ARGS
from runtimes.container import namespaces as container_namespaces
from runtimes.workloads import MARKER_FD, READY, RESULT, Workload
from tests.conftest import require

pytestmark = pytest.mark.privileged


def test_bwrap_runs_the_workload_in_the_containers_namespaces_over_the_rootfs(run_id: str, no_leftovers) -> None:
    b = runtimes.get("bwrap")
    reason = b.available()
    require(reason is None, f"bwrap: {reason}")
    bb = "/bin/busybox"
    kinds = [k for k in container_namespaces.DEFAULT]
    own = {k: container_namespaces.ns_id("self", k) for k in kinds}
    script = (f"echo '{READY}' >&{MARKER_FD}; "
              + "".join(f"echo \"{RESULT} ns_{k}=$({bb} readlink /proc/self/ns/{k})\" >&{MARKER_FD}; " for k in kinds)
              + "".join(f"echo \"{RESULT} fd{n}=$({bb} readlink /proc/self/fd/{n})\" >&{MARKER_FD}; " for n in (0, 1, 2))
              + f"{bb} touch /isobench-probe 2>/dev/null; echo \"{RESULT} write_root=$?\" >&{MARKER_FD}; "
              f"echo \"{RESULT} root=\" /* >&{MARKER_FD}; exit 3")
    spec = LaunchSpec(Workload("noop"), run_id, f"isobench-{run_id}-0", timeout_s=30, extra={"argv": [bb, "sh", "-c", script]})
    with b.launch(spec) as inst:
        inst.wait_ready(20)
        assert inst.wait(20) == 3
    t = inst.times
    assert t.t_launch < t.t_ready <= t.t_exit <= t.t_clean
    for k in kinds:  # a fresh namespace of every kind the container makes (pid, mnt, uts, ipc, net, cgroup)
        assert inst.results[f"ns_{k}"] != f"{k}:[{own[k]}]", k
    assert len(NAMESPACE_ARGS) == len(kinds) - 1  # bwrap always makes the mount namespace
    assert inst.results["write_root"] != "0"  # the shared rootfs is bound read-only
    assert all(inst.results[f"fd{n}"].startswith("pipe:") for n in (0, 1, 2))  # stdio the harness owns
    assert inst.results["root"].split() == sorted(f"/{p.name}" for p in rootfs.build().iterdir()
                                                  if not p.name.startswith("."))
    assert not (rootfs.build() / "isobench-probe").exists()
    assert b.metadata()["version"]
