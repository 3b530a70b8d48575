"""Real guests through a real libvirtd (TCG here: ~10 s a boot, so few boots, shared).

Needs root, a reachable ``qemu:///system`` (``python -m runtimes.vm.host --setup``)
and a guest kernel in /boot.  Every test checks that the guest left nothing:
no domain, no QEMU process, no libvirt cgroup.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from runtimes import exits
from runtimes.base import BackendError, InstanceTimeout, LaunchSpec, Limits
from runtimes.workloads import Workload
from tests.conftest import isobench_cgroups

pytestmark = [pytest.mark.vm, pytest.mark.libvirt, pytest.mark.privileged, pytest.mark.slow]
READY_TIMEOUT_S = 120.0  # TCG on a loaded 2-core machine


@pytest.fixture(scope="module")
def backend():
    from runtimes.vm.backend import VmBackend

    b = VmBackend()
    yield b
    b.close()


def guest_left(name: str) -> list[str]:
    """Whatever of guest ``name`` still exists: domain, QEMU process, cgroup."""
    left = []
    names = subprocess.run(["virsh", "-c", "qemu:///system", "list", "--all", "--name"],
                           capture_output=True, text=True, check=True).stdout.split()
    if name in names:
        left.append(f"domain {name}")
    pg = subprocess.run(["pgrep", "-f", f"guest={name},"], capture_output=True, text=True)
    left += [f"qemu pid {p}" for p in pg.stdout.split()]
    left += [d for d in isobench_cgroups() if name in d]
    return left


def spec(run_id: str, n: int, workload: Workload, log_dir: Path, **kw) -> LaunchSpec:
    return LaunchSpec(workload=workload, run_id=run_id, instance=f"isobench-{run_id}-{n}",
                      timeout_s=READY_TIMEOUT_S, log_dir=str(log_dir), **kw)


@pytest.fixture(scope="module")
def noop_run(backend, tmp_path_factory):
    """One noop guest, booted to the end, shared by the tests that inspect it."""
    log_dir = tmp_path_factory.mktemp("vm-noop")
    run_id = f"vmt{os.getpid()}"
    s = spec(run_id, 0, Workload("noop"), log_dir)
    ev = exits.ExitEvents()  # when QEMU ends (power-off or destroy), on the kernel's clock
    try:
        inst = backend.launch(s)
        try:
            pids = inst.processes()
            qemu_cmdline = Path(f"/proc/{pids[0]}/cmdline").read_bytes().decode() if pids else ""
            inst.wait_ready(READY_TIMEOUT_S)
            rc = inst.wait(READY_TIMEOUT_S)
            report = inst.guest_report()
        finally:
            inst.cleanup()
        t_qemu_end = ev.exit_of(pids[0], inst.times.t_launch) if pids else None
    finally:
        ev.close()
    return {"inst": inst, "rc": rc, "pids": pids, "qemu_cmdline": qemu_cmdline, "report": report,
            "t_qemu_end": t_qemu_end,
            "left": guest_left(s.instance)}


def test_probe_decides_and_says_why(backend):
    v = backend.verdict()
    assert v.accel in ("kvm", "tcg") and v.reason
    if v.accel == "kvm":
        assert os.path.exists("/dev/kvm")
    elif os.path.exists("/dev/kvm") and not v.reason.startswith("tcg forced"):
        assert "did not boot" in v.reason and v.probe_s is not None
    meta = backend.metadata()
    assert meta["accel"] == v.accel and meta["accel_reason"] == v.reason
    assert meta["libvirt"].count(".") == 2 and meta["qemu"].count(".") == 2
    assert meta["kernel"].startswith("/")


def test_noop_guest_reports_ready_exit_and_phases(noop_run):
    inst = noop_run["inst"]
    t = inst.times
    assert noop_run["rc"] == 0
    assert t.t_launch < t.t_ready <= t.t_exit < t.t_clean
    # t_exit is the guest's EXIT line, before the guest is gone (power-off or destroy is teardown)
    assert t.t_exit == inst.t_exit_line and noop_run["t_qemu_end"] is not None
    assert t.t_exit < noop_run["t_qemu_end"] <= t.t_clean
    assert inst.accel in ("kvm", "tcg")
    phases = t.phases
    assert list(phases) == ["domain_create", "qemu_start", "guest_firmware", "guest_kernel", "guest_init"]
    assert all(v >= 0 for v in phases.values())
    # the phases partition launch -> ready (guest_firmware is clamped at 0 only on clock noise)
    assert abs(sum(phases.values()) - (t.t_ready - t.t_launch)) < 20_000_000
    assert phases["guest_kernel"] > 0


def test_noop_guest_reports_memory_and_cpu(noop_run):
    r = noop_run["report"]
    assert 0 < float(r["guest_mem_used"]) < float(r["guest_mem_total"]) <= 256
    assert float(r["guest_uptime_init"]) <= float(r["guest_uptime_workload"]) <= float(r["guest_uptime_exit"])
    assert float(r["guest_cpu_busy_s"]) >= 0 and r["guest_nproc"] == "1"
    assert r["accel"] == noop_run["inst"].accel


def test_noop_guest_console_log_and_qemu_process(noop_run):
    inst = noop_run["inst"]
    log = Path(inst.log_path).read_text()
    assert inst.log_path.endswith(f"{inst.name}.console.log")
    for line in ("ISOBENCH READY", "ISOBENCH EXIT 0", "ISOBENCH RESULT guest_uptime_init="):
        assert line in log
    assert len(noop_run["pids"]) == 1 and f"guest={inst.name}," in noop_run["qemu_cmdline"]
    assert inst.processes() == []


def test_noop_guest_leaves_nothing(noop_run):
    assert noop_run["left"] == []


def test_exec_argv_exit_status_and_inherited_output(backend, run_id, tmp_path, capfd):
    """``isobench exec --backend vm -- CMD``: busybox applets on PATH, output on stdout, status back."""
    argv = ["sh", "-c", "echo 'ISOBENCH READY' >&3; echo hello-from-the-guest; uname -r; exit 3"]
    s = spec(run_id, 1, Workload("noop"), tmp_path, extra={"argv": argv, "stdio": "inherit"})
    with backend.launch(s) as inst:
        inst.wait_ready(READY_TIMEOUT_S)
        assert inst.wait(READY_TIMEOUT_S) == 3
    out = capfd.readouterr().out
    assert "hello-from-the-guest" in out
    assert "ISOBENCH" not in out  # markers are not the command's output
    assert "ISOBENCH EXIT 3" in Path(inst.log_path).read_text()
    assert guest_left(s.instance) == []


def test_idle_guests_side_by_side_with_cputune(backend, run_id, tmp_path):
    """Two guests at once; <cputune> lands on the domain's cgroup; destroy reports -SIGKILL."""
    limited = spec(run_id, 2, Workload("idle"), tmp_path, vcpus=2, limits=Limits(cpu_quota=0.5))
    plain = spec(run_id, 3, Workload("idle"), tmp_path)
    a = backend.launch(limited)
    try:
        b = backend.launch(plain)
        try:
            quota = _domain_cpu_quota(a.processes()[0])
            if quota is not None:  # v1 here; v2 hosts expose cpu.max instead
                assert quota == (50_000, 100_000)
            a.wait_ready(READY_TIMEOUT_S)
            b.wait_ready(READY_TIMEOUT_S)
            assert a.guest_report()["guest_nproc"] == "2"
            usage = a.usage()
            assert usage["cpu_usage_ns"] > 0 and "cpu_nr_periods" in usage
            b_qemu = b.processes()[0]
            b.stop()
            assert b.wait(30) == -signal.SIGKILL
        finally:
            b.cleanup()
    finally:
        a.cleanup()
    assert a.times.t_clean is not None and b.times.t_clean is not None
    # destroyed, no EXIT line: t_exit is QEMU's end (the kernel's event), not libvirt's STOPPED
    # event, which follows libvirt's teardown of the domain
    t = b.times
    assert backend._exits is not None
    qemu_end = backend._exits.exit_of(b_qemu, t.t_launch)
    assert qemu_end is not None and t.t_exit == max(qemu_end, t.t_ready)
    assert t.t_launch < t.t_ready <= t.t_exit <= t.t_clean
    assert b.t_stopped is None or t.t_exit < b.t_stopped
    assert guest_left(limited.instance) == [] and guest_left(plain.instance) == []


def _domain_cpu_quota(pid: int) -> tuple[int, int] | None:
    from runtimes.vm.machine_cgroup import _domain_cgroup

    path = _domain_cgroup(Path(f"/proc/{pid}/cgroup").read_text(), "cpu")
    d = Path("/sys/fs/cgroup/cpu") / (path or "/").lstrip("/")
    if path is None or not (d / "cpu.cfs_quota_us").exists():
        return None
    return int((d / "cpu.cfs_quota_us").read_text()), int((d / "cpu.cfs_period_us").read_text())


def test_guest_not_ready_in_time_is_destroyed_and_its_log_kept(backend, run_id, tmp_path):
    s = spec(run_id, 4, Workload("noop"), tmp_path)
    inst = backend.launch(s)
    try:
        with pytest.raises(InstanceTimeout, match="console log: .*console.log") as e:
            inst.wait_ready(0.2)  # no guest boots that fast, not even under KVM
        assert guest_left(s.instance) == []  # destroyed at the timeout, before cleanup
    finally:
        inst.cleanup()
    named = Path(str(e.value).split("console log: ")[1].split()[0])
    # kept when the guest said anything before its end; an empty log is removed at cleanup
    if inst.log_path is None:
        assert not named.exists()
    else:
        assert inst.log_path == str(named) and named.stat().st_size > 0


def test_launch_refuses_a_duplicate_name_without_leaving_anything(backend, run_id, tmp_path):
    s = spec(run_id, 5, Workload("idle"), tmp_path)
    with backend.launch(s):
        with pytest.raises(BackendError, match="already running"):
            backend.launch(s)
    assert guest_left(s.instance) == []


CHILD = textwrap.dedent("""
    import sys, time
    from runtimes.base import LaunchSpec
    from runtimes.vm.backend import VmBackend
    from runtimes.workloads import Workload
    run_id = sys.argv[1]
    b = VmBackend()
    for n, auto in ((0, True), (1, False)):
        b.launch(LaunchSpec(workload=Workload("idle"), run_id=run_id, instance=f"isobench-{run_id}-{n}",
                            extra={"autodestroy": auto}))
    print("launched", flush=True)
    time.sleep(600)
""")


def test_sigkilled_harness_leaves_nothing_after_cleanup_leftovers(backend, run_id):
    from runtimes.vm import cleanup_leftovers

    child = subprocess.Popen([sys.executable, "-c", CHILD, run_id], stdout=subprocess.PIPE, text=True,
                             cwd=Path(__file__).resolve().parent.parent)
    try:
        assert child.stdout.readline().strip() == "launched"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    auto, kept = f"isobench-{run_id}-0", f"isobench-{run_id}-1"
    # libvirtd destroys the AUTODESTROY domain when the dead harness's connection drops
    deadline = time.monotonic() + 30
    while guest_left(auto) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert guest_left(auto) == []
    assert f"domain {kept}" in guest_left(kept)
    assert kept not in cleanup_leftovers("some-other-run")
    assert cleanup_leftovers(run_id) == [kept]
    assert guest_left(kept) == []
    assert cleanup_leftovers(run_id) == []
