"""The bare backend and the pieces it shares: workloads, marker channel, rootfs, exec."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

import runtimes
from runtimes import rootfs
from runtimes.base import BackendError, LaunchSpec, Limits
from runtimes.marker import MarkerChannel
from runtimes.wait import wait_until
from runtimes.workloads import CATALOG, WORKDIR, Workload, parse_marker_line
from tests.conftest import require


def test_marker_lines_parse() -> None:
    assert parse_marker_line("ISOBENCH READY\r") == ("ready", "")
    assert parse_marker_line("ISOBENCH RESULT reached=5") == ("result", "reached=5")
    assert parse_marker_line("ISOBENCH EXIT 3") == ("exit", "3")
    assert parse_marker_line("[    0.1] ISOBENCH READYish") is None
    assert parse_marker_line("random console noise") is None


def test_marker_channel_timestamps_only_complete_lines() -> None:
    ch = MarkerChannel()
    ch.feed(b"boot noise\nISOBENCH RE")
    assert ch.t_ready is None
    ch.feed(b"ADY\nISOBENCH RESULT k=v\nISOBENCH EXIT 7\n")
    assert ch.t_ready is not None and ch.results == {"k": "v"} and ch.exit_status == 7


def test_workload_parameters_are_validated() -> None:
    with pytest.raises(ValueError, match="unknown workload"):
        Workload("nope")
    with pytest.raises(ValueError, match="no parameter 'speed'"):
        Workload("cpu", {"speed": 1})
    with pytest.raises(ValueError, match="threads must be >= 1"):
        Workload("cpu", {"threads": 0})
    assert Workload("cpu", {"threads": 2}).bound() == {"threads": 2, "seconds": 3.0}
    for name in CATALOG:  # every workload writes the marker first (after entering its working directory)
        script = Workload(name).script().removeprefix(f"cd {WORKDIR} || exit 96; ")
        assert script.startswith("echo 'ISOBENCH READY' >&3")


def test_rootfs_holds_the_same_bytes_at_the_same_paths() -> None:
    require(os.path.exists("/bin/busybox"), "busybox-static not installed")
    root = rootfs.build()
    assert rootfs.build() == root  # cached
    for f in rootfs.BINARIES:
        assert (root / os.path.realpath(f).lstrip("/")).read_bytes() == Path(f).read_bytes()
    for d in rootfs.MOUNTPOINTS:
        assert (root / d).is_dir()


def _spec(run_id: str, workload: Workload, limits: Limits = Limits(), **extra) -> LaunchSpec:
    return LaunchSpec(workload, run_id, f"isobench-{run_id}-0", limits, timeout_s=30, extra=extra)


@pytest.mark.privileged
def test_bare_timestamps_are_ordered_and_exit_status_passes(run_id: str, no_leftovers) -> None:
    b = runtimes.get("bare")
    with b.launch(_spec(run_id, Workload("noop"))) as inst:
        inst.wait_ready(10)
        assert inst.wait(10) == 0
    t = inst.times
    assert t.t_launch < t.t_ready <= t.t_exit <= t.t_clean


@pytest.mark.privileged
def test_bare_with_limits_uses_a_cgroup_and_removes_it(run_id: str, no_leftovers) -> None:
    b = runtimes.get("bare")
    with b.launch(_spec(run_id, Workload("pids", {"count": 20, "seconds": 2}), Limits(pids=6))) as inst:
        inst.wait_ready(10)
        inst.wait(20)
        assert inst.cgroup is not None
        usage = inst.usage()
        assert usage["pids_refused"] >= 1
        assert int(inst.results["reached"]) <= 6
        cg_dirs = list(inst.cgroup.dirs.values())
    assert inst.cgroup.removed and not any(d.exists() for d in cg_dirs)
    assert "cgroup_create" in inst.times.phases


@pytest.mark.privileged
def test_a_log_that_cannot_be_opened_leaves_no_cgroup(run_id: str, tmp_path: Path, no_leftovers) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    spec = dataclasses.replace(_spec(run_id, Workload("noop"), Limits(pids=6)), log_dir=str(not_a_dir))
    with pytest.raises(BackendError, match="cannot start noop"):
        runtimes.get("bare").launch(spec)


@pytest.mark.privileged
def test_stop_kills_the_whole_tree(run_id: str, no_leftovers) -> None:
    b = runtimes.get("bare")
    inst = b.launch(_spec(run_id, Workload("pids", {"count": 5, "seconds": 60})))
    try:
        inst.wait_ready(10)
        wait_until(lambda: int(inst.results.get("reached", 0)) >= 6, timeout=5)
        # a PID alone can be reused by another process once ours is gone: remember each
        # process with its start time, which a reused PID does not share
        procs = [psutil.Process(p) for p in inst.processes()]
        assert len(procs) >= 6
    finally:
        inst.cleanup()

    def survivors() -> list[int]:
        alive = []
        for proc in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                    alive.append(proc.pid)
        return alive

    # SIGKILL is delivered at once but a process takes its time to exit (its memory is torn down
    # first): a loaded CI host once saw one grandchild still exiting right after cleanup returned
    wait_until(lambda: not survivors(), timeout=5)
    assert not survivors()


@pytest.mark.privileged
def test_exec_passes_output_and_status_through() -> None:
    proc = subprocess.run([sys.executable, "-m", "harness", "exec", "--backend", "bare", "--pids", "10", "--",
                           "/bin/busybox", "sh", "-c", "echo hello; echo oops >&2; exit 7"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 7
    assert proc.stdout == "hello\n" and proc.stderr == "oops\n"


def test_exec_without_a_command_is_a_clear_error() -> None:
    proc = subprocess.run([sys.executable, "-m", "harness", "exec", "--backend", "bare"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
