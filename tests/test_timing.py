"""The timing contract, the same on every backend (runtimes/base.py, docs/metrics.md).

t_launch <= t_ready <= t_exit <= t_clean on the real backends; the logs are opened before
t_launch by all of them; an OCI container's exit is its process's, before the runtime's
delete; a guest's exit is its EXIT line, before QEMU ends (tests/test_qemu.py and
tests/test_vm_guest.py check the guests).  No wall-clock thresholds: only the order.
"""

from __future__ import annotations

import os
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest

import runtimes
from runtimes import exits, process
from runtimes.base import LaunchSpec, now_ns
from runtimes.workloads import Workload
from tests.conftest import require

PROCESS_BACKENDS = ["bare", "unshare", "bwrap", "container", "oci:runc", "oci:crun", "oci:runsc"]


def _datagram(what: int, ts: int, pid: int, tgid: int, ptgid: int) -> bytes:
    header = struct.pack("=IHHII", 0, 0, 0, 0, 0) + struct.pack("=IIIIHH", 1, 1, 0, 0, 40, 0)
    return header + struct.pack("=IIQ", what, 0, ts) + struct.pack("=6i", pid, tgid, 0, 0, ptgid, ptgid)


def test_exit_events_parse_keeps_thread_group_leaders_only() -> None:
    assert exits.parse(_datagram(exits.PROC_EVENT_EXIT, 123, 50, 50, 7)) == (7, 50, 123)
    assert exits.parse(_datagram(exits.PROC_EVENT_EXIT, 123, 51, 50, 7)) is None  # a thread
    assert exits.parse(_datagram(0x1, 123, 50, 50, 7)) is None  # a fork event
    assert exits.parse(b"short") is None


@pytest.mark.privileged
def test_exit_events_time_a_childs_exit_on_the_harness_clock() -> None:
    ev = exits.ExitEvents()
    try:
        t0 = now_ns()
        child = subprocess.Popen(["/bin/true"])
        child.wait()
        t_reaped = now_ns()
        t = ev.last_child_exit(os.getpid(), t0)
        assert t is not None and t0 <= t <= t_reaped
        assert ev.exit_of(child.pid, t0) == t
        assert ev.exit_of(child.pid, t_reaped + 1) is None
    finally:
        ev.close()
    ev.close()  # idempotent


@pytest.mark.privileged
@pytest.mark.parametrize("name", PROCESS_BACKENDS)
@pytest.mark.parametrize("workload", ["noop", "idle"])
def test_timestamps_in_order_and_the_log_opened_before_t_launch(
        name: str, workload: str, run_id: str, tmp_path: Path, monkeypatch, no_leftovers) -> None:
    b = runtimes.get(name)
    reason = b.available()
    require(reason is None, f"{name}: {reason}")
    opened: list[int] = []
    real_open = process.open_log

    made: list[str | None] = []

    def spy(spec: LaunchSpec, suffix: str) -> Any:
        opened.append(now_ns())
        stdio = real_open(spec, suffix)
        made.append(stdio.path)
        return stdio

    monkeypatch.setattr(process, "open_log", spy)
    spec = LaunchSpec(Workload(workload), run_id, f"isobench-{run_id}-0", timeout_s=30, log_dir=str(tmp_path))
    try:
        with b.launch(spec) as inst:
            inst.wait_ready(30)
            if workload == "idle":
                inst.stop()
            inst.wait(30)
        meta = b.metadata()
    finally:
        b.close()
    t = inst.times
    assert len(opened) == 1 and t.t_launch is not None and opened[0] < t.t_launch
    # made before t_launch; after cleanup kept only when the workload wrote to it (tests/test_logs.py)
    assert made and made[0] is not None and (inst.log_path is None) is not Path(made[0]).is_file()
    assert t.t_launch <= t.t_ready <= t.t_exit <= t.t_clean  # type: ignore[operator]
    if name.startswith("oci:"):
        # the container's process exited before the runtime deleted the container and exited
        assert meta["t_exit"].startswith("the kernel's exit event")
        assert inst.t_runtime_exit is not None  # type: ignore[attr-defined]
        assert t.t_exit < inst.t_runtime_exit <= t.t_clean  # type: ignore[attr-defined,operator]


def test_a_phase_since_launch_needs_the_launch_recorded() -> None:
    from runtimes.base import Timestamps

    with pytest.raises(ValueError, match="t_launch"):
        Timestamps().since_launch()
    launched = now_ns()
    assert 0 <= Timestamps(t_launch=launched).since_launch() <= now_ns() - launched
