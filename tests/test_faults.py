"""Faults in the middle of a run (issue 25 item 2): each ends the way it should, and leaves nothing.

- the zygote SIGKILLed while a request is in flight: that sample fails with its reason, the
  next launch starts a new zygote, the run completes;
- the results file system full: the samples written before are kept and readable (no half
  line), one clear error, exit status 1;
- the harness's own cgroup under memory pressure: the run completes (the kernel reclaims), or
  (were it killed) ``isobench cleanup --run-id`` leaves nothing;

and, with a guest (``tests/test_faults_guest.py``): a guest that never becomes ready, libvirtd
restarted mid-run.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import results, runner, scenario
from runtimes import cgroups, owners
from runtimes import syscalls as sc
from runtimes.base import Limits
from runtimes.naming import PREFIX
from tests.conftest import isobench_cgroups, isobench_mounts

ISOBENCH = [sys.executable, "-m", "harness"]
ROOT = Path(__file__).resolve().parents[1]


def _scenario(backend: str, repetitions: int) -> scenario.Scenario:
    text = (f'[scenario]\nname = "fault"\nbackends = ["{backend}"]\nrepetitions = {repetitions}\nwarmups = 0\n'
            '[[experiment]]\nmeasurement = "startup"\nworkloads = ["noop"]\n')
    return scenario.parse(tomllib.loads(text), "fault.toml", text)


def _left(run_id: str) -> list[str]:
    """What of the run is still there: cgroups, mounts, owner records."""
    return ([d for d in isobench_cgroups() if run_id in d] + [m for m in isobench_mounts() if run_id in m]
            + [str(p) for p in (owners.OWNERS / run_id).glob("*")])


def _children_named(comm: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            status = Path(f"/proc/{pid}/status").read_text()
            fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
            if fields.get("Name") == comm and fields.get("PPid") == str(os.getpid()) and fields["State"][0] != "Z":
                found.append(int(pid))
    return found


# -- the zygote dies mid-request -----------------------------------------------------------------
@pytest.mark.privileged
def test_the_zygote_killed_mid_request_fails_that_sample_and_the_run_goes_on(run_id: str, tmp_path: Path) -> None:
    from runtimes.container.launcher.zygote_server import ZYGOTE_COMM

    samples = tmp_path / run_id / results.SAMPLES
    killed: list[int] = []

    def kill_mid_request() -> None:
        """Once a few samples are in: stop the zygote (the next request waits in its socket),
        then SIGKILL it while that request is in flight."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if samples.exists() and samples.read_text().count("\n") >= 10 and (z := _children_named(ZYGOTE_COMM)):
                os.kill(z[0], signal.SIGSTOP)
                time.sleep(0.5)  # the harness's next launch sends its request meanwhile
                os.kill(z[0], signal.SIGKILL)
                killed.append(z[0])
                return
            time.sleep(0.01)

    fault = threading.Thread(target=kill_mid_request)
    fault.start()
    try:
        run_dir = runner.run(_scenario("container", 30), tmp_path, progress=False, run_id=run_id)
    finally:
        fault.join()
    assert killed, "the zygote was never seen"
    rows = results.read_samples(run_dir)
    failed = [r for r in rows if r["status"] == "failed"]
    assert len(failed) == 1, failed
    assert f"({ZYGOTE_COMM}, pid {killed[0]}) died while forking a container: killed by SIGKILL" in failed[0]["error"]
    after = [r for r in rows if r["status"] == "ok" and r["position"] > failed[0]["position"]]
    assert after, "no launch succeeded after the zygote died (a new one should have started)"
    assert results.read_manifest(run_dir)["status"] == "completed"
    assert _children_named(ZYGOTE_COMM) == [] and _left(run_id) == []


# -- the results file system fills up ------------------------------------------------------------
@contextlib.contextmanager
def _small_tmpfs(run_id: str, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` at an isobench mount point of this run (``isobench cleanup --run-id``
    would find it if this process died), always unmounted."""
    owners.claim(run_id)
    point = Path(f"/run/{PREFIX}") / f"{PREFIX}-{run_id}-results"
    point.mkdir(parents=True, exist_ok=True)
    sc.mount("tmpfs", point, "tmpfs", sc.MS_NOSUID | sc.MS_NODEV, f"size={size},mode=0700")
    try:
        yield point
    finally:
        sc.umount2(point, sc.MNT_DETACH)
        point.rmdir()
        owners.release(run_id)


@pytest.mark.privileged
def test_a_full_results_file_system_keeps_what_was_written_with_one_error(run_id: str, tmp_path: Path) -> None:
    scen = tmp_path / "fill.toml"
    scen.write_text(_scenario("bare", 2000).text)
    with _small_tmpfs(run_id, "64k") as point:
        done = subprocess.run([*ISOBENCH, "run", str(scen), "--results", str(point), "--run-id", run_id,
                               "--no-progress"], capture_output=True, text=True, timeout=300, cwd=ROOT)
        errors = [line for line in done.stderr.splitlines() if "error" in line.lower() or "Traceback" in line]
        assert done.returncode == 1, done.stderr
        assert len(errors) == 1 and errors[0].startswith("isobench: error: cannot write"), done.stderr
        assert "No space left on device" in errors[0] and "written before are kept" in errors[0]
        kept = int(errors[0].split(" sample(s) written before")[0].rsplit(" ", 1)[1])
        text = (point / run_id / results.SAMPLES).read_text()
        assert text.endswith("\n") and text.count("\n") == kept > 0, "a half line was left"
        assert len(results.read_samples(point / run_id)) == kept
        manifest = results.read_manifest(point / run_id)
        assert manifest["run_id"] == run_id and manifest["status"] == "interrupted"
    assert _left(run_id) == [] and not point.exists()


# -- the harness's own cgroup under memory pressure -----------------------------------------------
_PRESSURE = """[scenario]
name = "pressure"
backends = ["container"]
warmups = 0
[[experiment]]
measurement = "mem_limit"
seconds = 1
repetitions = 2
grid = { mib = [%d], limit_mib = [4096] }
[[experiment]]
measurement = "startup"
workloads = ["noop"]
repetitions = 5
"""


@pytest.mark.privileged
def test_the_harness_under_memory_pressure_survives_and_its_run_completes(run_id: str, tmp_path: Path) -> None:
    """The harness in a memory cgroup of its own (below ours), whose limit its workloads --
    their cgroups lie below the harness's -- run into: the kernel's OOM killer picks the
    workload (the largest), not the harness; that sample fails with its reason, the run goes
    on and completes, and nothing is left.  (Below its own ~60 MiB, with no swap, the harness
    itself is killed: then ``isobench cleanup --run-id`` removes what it left, as for any
    SIGKILL; docs/reliability.md.)"""
    limit_mib = 192
    scen = tmp_path / "pressure.toml"
    scen.write_text(_PRESSURE % (2 * limit_mib))
    cg = cgroups.Cgroup.create(f"{PREFIX}-{run_id}-harness", Limits(memory_mib=limit_mib))
    try:
        proc = subprocess.Popen([*ISOBENCH, "run", str(scen), "--results", str(tmp_path), "--run-id", run_id,
                                 "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                cwd=ROOT, preexec_fn=lambda: cg.attach(0))
        _, err = proc.communicate(timeout=600)
        usage = cg.usage()
    finally:
        cg.remove()
    assert proc.returncode == 0, err
    assert usage["mem_peak_bytes"] >= 0.98 * (limit_mib << 20), f"no pressure on the harness's cgroup: {usage}"
    rows = results.read_samples(tmp_path / run_id)
    # the OOM killer's victim was the workload (its own counters say so), not the harness
    assert [r["value"] for r in rows if r["metric"] == "oom_killed"] == [1.0, 1.0], rows
    assert [r["status"] for r in rows if r["workload"] == "noop" and r["metric"] == "launch_to_ready"] == ["ok"] * 5
    assert results.read_manifest(tmp_path / run_id)["status"] == "completed"
    assert _left(run_id) == []
