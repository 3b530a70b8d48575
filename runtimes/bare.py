"""The ``bare`` backend: fork/exec of the workload on the host, the reference point.

With limits (or ``extra["cgroup"]``) the child places itself into a fresh
cgroup below the harness's own before it execs, so nothing it forks escapes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil

from runtimes.base import Backend, BackendError, Instance, InstanceTimeout, LaunchSpec, Timestamps, now_ns
from runtimes.cgroups import Cgroup
from runtimes.marker import MarkerChannel
from runtimes.workloads import BUSYBOX, MARKER_FD


def open_log(spec: LaunchSpec, suffix: str) -> tuple[Any, str | None]:
    """Where the workload's stdout/stderr go: inherited (``isobench exec``), a log file, or nowhere."""
    if spec.extra.get("stdio") == "inherit":
        return None, None
    if spec.log_dir:
        path = Path(spec.log_dir) / f"{spec.instance}.{suffix}.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        return open(path, "wb"), str(path)
    return subprocess.DEVNULL, None


def close_log(log: Any) -> None:
    """Close ``open_log``'s file once the child has its own copy (no-op for inherit / DEVNULL)."""
    if hasattr(log, "close"):
        with contextlib.suppress(OSError):
            log.close()


@contextlib.contextmanager
def launching(inst: Instance, what: str, log: Any = None) -> Iterator[None]:
    """Around the start of a created instance: nothing half-created survives a failure.

    On any exception ``inst`` is cleaned up; an OSError becomes one readable
    ``BackendError("<what>: <error>")``.  ``log`` (from ``open_log``) is closed either way.
    """
    try:
        yield
    except OSError as e:
        inst.cleanup()
        raise BackendError(f"{what}: {e}") from e
    except BaseException:
        inst.cleanup()
        raise
    finally:
        close_log(log)


class ProcessInstance(Instance):
    """A workload run as a host process tree (bare; the base of process-like backends)."""

    def __init__(self, spec: LaunchSpec, cgroup: Cgroup | None, times: Timestamps):
        self.spec = spec
        self.name = spec.instance
        self.times = times
        self.cgroup = cgroup
        self.marker = MarkerChannel()
        self.results = self.marker.results
        self.proc: subprocess.Popen[bytes] | None = None
        self.returncode: int | None = None
        self._cleaned = False

    def _spawn(self, argv: list[str], log: Any, preexec: Any = None) -> None:
        r, w = os.pipe()
        cg_files = [str(p) for p in self.cgroup.procs_files()] if self.cgroup else []

        def child() -> None:
            # Runs in the child between fork and exec: join the cgroup first, so
            # everything the workload forks is counted and limited.
            pid = str(os.getpid()).encode()
            for f in cg_files:
                fd = os.open(f, os.O_WRONLY)
                os.write(fd, pid)
                os.close(fd)
            os.dup2(w, MARKER_FD)
            if preexec is not None:
                preexec()

        try:
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, pass_fds=(MARKER_FD,),
                preexec_fn=child, start_new_session=True)
        except BaseException:
            os.close(r)
            raise
        finally:
            os.close(w)
        self.marker.read_fd(r)

    def wait_ready(self, timeout: float) -> int:
        self.times.t_ready = self.marker.wait_ready(timeout, self.name)
        return self.times.t_ready

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        try:
            self.returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired as e:
            raise InstanceTimeout(f"{self.name}: still running after {timeout:g} s") from e
        if self.times.t_exit is None:
            self.times.t_exit = now_ns()
        self.marker.join(1.0)
        return self.returncode

    def processes(self) -> list[int]:
        if self.cgroup is not None and not self.cgroup.removed:
            return self.cgroup.pids()
        if self.proc is None or self.proc.poll() is not None:
            return []
        try:
            root = psutil.Process(self.proc.pid)
            return [root.pid] + [c.pid for c in root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        if self.cgroup is not None and not self.cgroup.removed:
            self.cgroup.kill()

    def cleanup(self) -> None:
        if self._cleaned:
            return
        try:
            self.stop()
            if self.proc is not None:
                self.proc.wait()
                if self.times.t_exit is None:
                    self.times.t_exit = now_ns()
            self._release()
            self.marker.join(1.0)
        finally:
            self._cleaned = True
            self.times.t_clean = now_ns()

    def _release(self) -> None:
        """What is left on the host once the process is reaped (cleanup's backend-specific step)."""
        if self.proc is not None:
            # orphans left in the session when there is no cgroup to sweep
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        if self.cgroup is not None:
            self.cgroup.remove()


class BareBackend(Backend):
    name = "bare"

    def available(self) -> str | None:
        if not os.path.exists(BUSYBOX):
            return f"{BUSYBOX} missing (fix: apt-get install busybox-static)"
        return None

    def launch(self, spec: LaunchSpec) -> Instance:
        times = Timestamps(t_launch=now_ns())
        cgroup = None
        if spec.limits.any() or spec.extra.get("cgroup"):
            cgroup = Cgroup.create(spec.instance, spec.limits)
            times.phases["cgroup_create"] = now_ns() - times.t_launch  # type: ignore[operator]
        inst = ProcessInstance(spec, cgroup, times)
        log, inst.log_path = open_log(spec, "bare")
        with launching(inst, f"cannot start {spec.workload.name}", log):
            inst._spawn(self.command(list(spec.extra.get("argv") or spec.workload.argv())), log)
        return inst

    def command(self, argv: list[str]) -> list[str]:
        """The host command line that runs ``argv`` (a wrapper such as unshare(1) prefixes it)."""
        return argv

    def metadata(self) -> dict[str, Any]:
        return {"busybox": os.path.realpath(BUSYBOX)}
