"""oci:runsc for real: gVisor runs the same bundle, its limits sit on the host cgroup around the
sandbox, the Sentry and Gofer count for memory, the bundle's seccomp profile is applied, and
nothing is left behind (runsc starts in ~0.15 s here; every test is a few launches)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import runtimes
from runtimes import cgroups, rootfs
from runtimes.base import BackendError, Limits
from runtimes.workloads import MARKER_FD, READY, RESULT, Workload
from tests.conftest import require
from tests.test_oci import _left_behind, _spec  # (the same spec and leftovers as runc's and crun's)

pytestmark = pytest.mark.privileged

LIMITS = Limits(cpu_quota=0.5, cpu_period_us=50_000, memory_mib=96)


@pytest.fixture(scope="module")
def backend():
    b = runtimes.get("oci:runsc", platform="ptrace")  # the platform this host runs (no 5 s KVM probe)
    reason = b.available()
    require(reason is None, f"oci:runsc: {reason}")
    b.prepare()
    yield b
    b.close()


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def test_t_exit_is_the_sentrys_exit_and_nothing_is_written_into_the_rootfs(backend, run_id: str,
                                                                          no_leftovers) -> None:
    """(ready, exit status, cleanup: tests/test_oci.py runs those on runsc too.)"""
    root = rootfs.build()
    before = sorted(p.name for p in root.iterdir())
    with backend.launch(_spec(run_id, Workload("noop"))) as inst:
        assert inst.accel == "ptrace"
        inst.wait_ready(20)
        assert inst.wait(20) == 0
    t = inst.times
    assert t.t_launch < t.t_ready <= t.t_exit <= t.t_clean
    assert inst.sandbox_pid is not None and inst.sandbox_pid != inst.proc.pid  # the Sentry, not the runtime
    assert _left_behind(inst.name) == [] and sorted(p.name for p in root.iterdir()) == before


def test_the_host_cgroup_holds_the_sandbox_and_its_processes_count(backend, run_id: str, no_leftovers) -> None:
    """runsc writes our limits into the cgroup it puts the Gofer, the Sentry and the stubs in;
    ``processes()`` (what the memory measurement sums) is the runtime plus all of them."""
    ours = cgroups.Cgroup.create(f"isobench-{run_id}-ref", LIMITS)
    try:
        with backend.launch(_spec(run_id, Workload("idle"), LIMITS)) as inst:
            inst.wait_ready(20)
            assert inst.cgroup is not None
            held = inst.cgroup.pids()
            cmdlines = [_cmdline(p) for p in held]
            assert any("runsc-sandbox" in c for c in cmdlines) and any("runsc-gofer" in c for c in cmdlines)
            # the ptrace platform starts stub processes while the sandbox runs: compare two reads
            # taken back to back, again where a stub came or went between them
            for _ in range(50):
                held, procs = inst.cgroup.pids(), inst.processes()
                if procs == [inst.proc.pid, *held]:
                    break
            assert procs == [inst.proc.pid, *held]
            # stdio the harness owns: pipes, never a file of the host (runsc hands them to the sandbox)
            for fd in (0, 1, 2):
                assert os.readlink(f"/proc/{inst.proc.pid}/fd/{fd}").startswith("pipe:"), fd
            if ours.version == 1:
                for ctrl, f in (("cpu", "cpu.cfs_quota_us"), ("cpu", "cpu.cfs_period_us"),
                                ("memory", "memory.limit_in_bytes")):
                    assert (inst.cgroup.dirs[ctrl] / f).read_text() == (ours.dirs[ctrl] / f).read_text(), f
            else:
                for f in ("cpu.max", "memory.max"):
                    assert (inst.cgroup.dirs[""] / f).read_text() == (ours.dirs[""] / f).read_text(), f
            usage = inst.usage()
            assert usage["pids_current"] > 2 and usage["mem_current_bytes"] > 0  # the Sentry's threads, its memory
            inst.stop()
            assert inst.wait(20) != 0
    finally:
        ours.remove()
    assert _left_behind(inst.name) == []


@pytest.mark.parametrize(("profile", "mode", "unshare"), [("default", "2", "1"), ("unconfined", "0", "0")])
def test_the_bundles_seccomp_profile_is_applied_by_the_sentry(backend, run_id: str, profile: str, mode: str,
                                                            unshare: str, no_leftovers) -> None:
    """Docker's profile denies unshare(CLONE_NEWUSER) without CAP_SYS_ADMIN: with --oci-seccomp the
    Sentry enforces it (this build ignores linux.seccomp without that flag)."""
    bb = "/bin/busybox"
    script = (f"echo '{READY}' >&{MARKER_FD}; "
              f"echo \"{RESULT} seccomp=$({bb} awk '/^Seccomp:/ {{print $2}}' /proc/self/status)\" >&{MARKER_FD}; "
              f"{bb} unshare -U {bb} true 2>/dev/null; echo \"{RESULT} unshare=$?\" >&{MARKER_FD}")
    spec = _spec(run_id, Workload("noop"), argv=[bb, "sh", "-c", script], seccomp=profile)
    with backend.launch(spec) as inst:
        inst.wait_ready(20)
        inst.wait(20)
    assert inst.results == {"seccomp": mode, "unshare": unshare}
    assert _left_behind(inst.name) == []


def test_a_pids_limit_below_the_sandboxs_own_threads_fails_cleanly(backend, run_id: str, no_leftovers) -> None:
    """The host's pids limit counts the Sentry's and Gofer's threads: at 8 the sandbox cannot
    start; that is one error, and nothing is left."""
    with pytest.raises(BackendError):
        with backend.launch(_spec(run_id, Workload("noop"), Limits(pids=8))) as inst:
            inst.wait_ready(20)
    assert _left_behind(inst.name) == []


def test_doctor_line_and_metadata_name_the_platform(backend) -> None:
    from runtimes.oci import checks

    (line,) = checks.runsc(probe=False)
    assert line.ok and "runsc" in line.detail and not line.essential
    (probed,) = checks.runsc(probe=True)  # the backend's own verdict (cached after the first probe)
    assert probed.ok and ("platform ptrace" in probed.detail or "platform kvm" in probed.detail)
    meta = backend.metadata()
    assert meta["accel"] == "ptrace" and meta["platform"] == "ptrace" and "--oci-seccomp" in meta["seccomp"]
    assert "Sentry" in meta["t_exit"]
