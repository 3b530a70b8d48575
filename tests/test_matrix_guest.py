"""Real virtme-ng guests: CI's cgroup v2 tests inside a v2 guest, and the guest runner's faults.

``test_every_v2host_test_passes_inside_a_cgroup_v2_guest`` is how CI exercises
real cgroup v2 controllers on a v1 host: every test marked ``v2host`` (deselected
on the host by pyproject's addopts) runs inside a guest booted with the host's
kernel, with CI=true; this test fails when any of them fails or skips, or when
none ran.  The fault tests check that a timed-out guest and a SIGKILLed harness
leave no QEMU and no temporary directory behind.
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

from harness.matrix import guest, intests, kernels, leftovers
from tests.conftest import is_root, require

pytestmark = [pytest.mark.vm, pytest.mark.slow, pytest.mark.privileged]
#: the whole guest part: boot (~30 s under TCG), Python imports over 9p, the tests
GUEST_TIMEOUT_S = 1500.0


def host_kernel() -> kernels.Kernel:
    require(is_root(), "needs root (guest cgroups, /dev/kvm probe)")
    require(guest.vng_binary() is not None, "virtme-ng (vng) is not installed: pip install virtme-ng")
    k = kernels.installed_default()
    require(k is not None, "a guest kernel in /boot with its modules (apt-get install linux-image-amd64)")
    assert k is not None
    return k


def test_every_v2host_test_passes_inside_a_cgroup_v2_guest(tmp_path, record_property) -> None:
    from harness.matrix import accel

    k = host_kernel()
    verdict_accel = accel.verdict(k.image)
    verdict, outcome = intests.run_in_guest("v2host", k.image, verdict_accel.accel, tmp_path, GUEST_TIMEOUT_S)
    record_property("guest_seconds", round(outcome.seconds, 1))
    record_property("guest_accel", verdict_accel.accel)
    print(f"guest part: {outcome.seconds:.0f} s, kernel {k.release}, {verdict_accel.accel} ({verdict_accel.reason})")
    assert verdict is not None, f"the guest wrote no JUnit XML ({outcome.detail or outcome.status}):\n{outcome.tail()}"
    assert verdict.passed, f"inside the v2 guest: {verdict.words()}\n{outcome.tail()}"
    assert outcome.ok, f"guest exit status {outcome.status}:\n{outcome.tail()}"
    assert not leftovers.guest_processes("v2host-tests")


def test_a_guest_past_its_timeout_is_killed_with_everything_it_started(tmp_path) -> None:
    k = host_kernel()
    out = guest.run(guest.Guest(k.image), "sleep 600", name=f"t{os.getpid()}-timeout", log=tmp_path / "log",
                    timeout_s=3)
    assert out.timed_out and out.status is None and "no result within 3 s" in out.detail
    assert not leftovers.guest_processes(f"t{os.getpid()}-timeout")
    assert not list(Path("/tmp").glob(f"{guest.GUEST_PREFIX}t{os.getpid()}-timeout-*"))


def test_a_sigkilled_harness_takes_its_guest_down_and_cleanup_removes_its_directory(tmp_path) -> None:
    k = host_kernel()
    name = f"t{os.getpid()}-sigkill"
    code = textwrap.dedent(f"""
        from pathlib import Path
        from harness.matrix import guest
        guest.run(guest.Guest(Path({str(k.image)!r})), "sleep 600", name={name!r},
                  log=Path({str(tmp_path / 'log')!r}), timeout_s=600)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=intests.ROOT)
    try:
        deadline = time.monotonic() + 60
        while not any("qemu" in _comm(p) for p in leftovers.guest_processes(name)):
            assert proc.poll() is None, "the harness process ended before its guest started"
            assert time.monotonic() < deadline, "no QEMU named after the guest appeared within 60 s"
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    deadline = time.monotonic() + 10
    while leftovers.guest_processes(name) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert leftovers.guest_processes(name) == [], "guest processes outlived the SIGKILLed harness"
    assert leftovers.stale_dirs(name), "the killed harness's temporary directory should be left for cleanup"
    from harness import cleanup

    removed = cleanup.cleanup(name)
    assert any("guest directory" in r for r in removed)
    assert leftovers.stale_dirs(name) == []


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text()
    except OSError:
        return ""


def test_ctrl_c_of_isobench_matrix_kills_the_guest_and_records_the_cell(tmp_path) -> None:
    k = host_kernel()
    proc = subprocess.Popen([sys.executable, "-m", "harness", "matrix", "scenarios/matrix-small.toml",
                             "--kernels", str(k.image), "--cgroups", "v2", "--results", str(tmp_path)],
                            cwd=intests.ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, ISOBENCH_ACCEL="tcg"))
    try:
        deadline = time.monotonic() + 120
        while not _qemu_sharing(tmp_path):  # this matrix's guest (others may run meanwhile)
            assert proc.poll() is None, f"isobench matrix ended early:\n{proc.stdout.read() if proc.stdout else ''}"
            assert time.monotonic() < deadline, "no guest QEMU appeared within 120 s"
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, out
    matrix_dir = Path(out.strip().splitlines()[-1])
    import json

    cells = json.loads((matrix_dir / "matrix.json").read_text())["cells"]
    assert [c["status"] for c in cells] == ["interrupted"], cells
    assert leftovers.guest_processes(matrix_dir.name) == []
    assert not list(Path("/tmp").glob(f"{guest.GUEST_PREFIX}{matrix_dir.name}-*"))


def _qemu_sharing(path: Path) -> list[int]:
    """Guest QEMUs whose command line shares ``path`` (a matrix's results directory) with the guest."""
    found = []
    for p in leftovers.guest_processes():
        try:
            if "qemu" in _comm(p) and str(path).encode() in Path(f"/proc/{p}/cmdline").read_bytes():
                found.append(p)
        except OSError:  # gone meanwhile
            continue
    return found
