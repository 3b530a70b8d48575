"""Guest faults (issue 25 item 2): a guest that never becomes ready, libvirtd restarted mid-run.

TCG here: a boot costs ~10-25 s, so each test boots as few guests as it can.  Both end with
nothing of the guest left: no domain, no QEMU process, no cgroup.

The libvirtd test restarts the host's libvirtd (SIGTERM, then exactly what ``isobench doctor
--fix`` does: ``runtimes.vm.host.start_daemons``): every other libvirt client on the host
loses its connection for a second.  CI runs alone; on a shared machine run it when nobody
else runs guests.
"""

from __future__ import annotations

from pathlib import Path

import psutil
import pytest

from runtimes.base import InstanceTimeout, LaunchSpec
from runtimes.vm.machine import KERNEL_CMDLINE
from runtimes.workloads import Workload
from tests.test_vm_guest import READY_TIMEOUT_S, guest_left

pytestmark = [pytest.mark.vm, pytest.mark.libvirt, pytest.mark.privileged, pytest.mark.slow]
#: how long the never-ready guest is given (a normal boot here takes 10-25 s; this one cannot)
NEVER_S = 15.0


def _spec(run_id: str, n: int, workload: str, log_dir: Path, timeout_s: float = READY_TIMEOUT_S) -> LaunchSpec:
    return LaunchSpec(workload=Workload(workload), run_id=run_id, instance=f"isobench-{run_id}-{n}",
                      timeout_s=timeout_s, log_dir=str(log_dir))


def test_a_guest_that_never_becomes_ready_times_out_and_leaves_nothing(run_id: str, tmp_path: Path) -> None:
    """Its kernel finds no init (``rdinit=`` names none) and stops in a panic (``panic=0``):
    no ready line ever comes.  The wait ends at the timeout with the console log named, the
    domain is destroyed, and its log shows why."""
    from runtimes.vm.backend import VmBackend
    from runtimes.vm.guest import GuestConfig

    backend = VmBackend(guest=GuestConfig(cmdline=f"{KERNEL_CMDLINE} rdinit=/isobench-no-init panic=0"))
    s = _spec(run_id, 0, "noop", tmp_path, NEVER_S)
    try:
        inst = backend.launch(s)
        try:
            with pytest.raises(InstanceTimeout, match=r"console log: .*console.log"):
                inst.wait_ready(NEVER_S)
        finally:
            inst.cleanup()
    finally:
        backend.close()
    assert guest_left(s.instance) == []
    log = Path(inst.log_path or "").read_text(errors="replace")
    assert "Kernel panic" in log or "No working init" in log or "Unable to mount root" in log, log[-2000:]


def _restart_libvirtd() -> None:
    """SIGTERM libvirtd, wait for it to go, start it as ``isobench doctor --fix`` does."""
    from runtimes.vm import host

    daemons = [p for p in psutil.process_iter(["name"]) if p.info["name"] == "libvirtd"]
    assert daemons, "no libvirtd to restart"
    for p in daemons:
        p.terminate()
    _, alive = psutil.wait_procs(daemons, timeout=30)
    assert not alive, f"libvirtd did not stop: {alive}"
    host.start_daemons()


def test_libvirtd_restarted_under_a_running_guest(run_id: str, tmp_path: Path) -> None:
    """A guest runs; libvirtd restarts.  The running guest ends (stopped through the new daemon,
    or its QEMU killed while none answers) without leaving anything; the backend's next launch
    opens a new connection and its guest runs to the end."""
    from runtimes.vm.backend import VmBackend

    backend = VmBackend()
    first = _spec(run_id, 0, "idle", tmp_path)
    try:
        inst = backend.launch(first)
        try:
            inst.wait_ready(READY_TIMEOUT_S)
            _restart_libvirtd()
            inst.stop()  # through the new daemon (the old connection is closed)
        finally:
            inst.cleanup()
        assert guest_left(first.instance) == []
        second = _spec(run_id, 1, "noop", tmp_path)
        with backend.launch(second) as again:
            again.wait_ready(READY_TIMEOUT_S)
            assert again.wait(READY_TIMEOUT_S) == 0
        assert backend._conn.opened == 2, "the backend did not reconnect"
        assert guest_left(second.instance) == []
    finally:
        backend.close()
