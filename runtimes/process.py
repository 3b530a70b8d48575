"""The process layer every process-like backend shares (bare, unshare, container, oci:*, qemu).

``ProcessInstance`` is a workload run as a host process tree with the marker
pipe on fd 3; ``ChildProcess`` is the slice of ``Popen`` it uses for a child
started some other way (posix_spawn, clone3); ``launching``/``open_log`` make
sure a failed start leaves nothing behind; ``kill_and_reap`` ends a helper.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from runtimes import owners, readiness
from runtimes.base import BackendError, Instance, InstanceTimeout, LaunchSpec, Timestamps, now_ns
from runtimes.cgroups import Cgroup, join_self
from runtimes.marker import MarkerChannel
from runtimes.output import LineWatch
from runtimes.stdio import Stdio
from runtimes.workloads import MARKER_FD

#: how long the harness waits for the end of a workload's output once it is cleaned up: EOF comes
#: with the exit unless something the workload left (bare: a background child) holds the pipe
OUTPUT_DRAIN_S = 1.0


def open_log(spec: LaunchSpec, suffix: str) -> Stdio:
    """The workload's stdio (``runtimes.stdio``): pipes copied to the harness's own stdout/stderr
    (``isobench exec``), to a log file, or nowhere; read line by line as well when the workload
    is ready by a line of its output (``runtimes.output``)."""
    ready = spec.workload.ready
    watch = LineWatch(ready.pattern) if ready.kind == "log" and ready.pattern else None
    if spec.extra.get("stdio") == "inherit":
        return Stdio.inherit(watch)
    if spec.log_dir:
        return Stdio.to_log(Path(spec.log_dir) / f"{spec.instance}.{suffix}.log", watch)
    return Stdio.discard(watch)


@contextlib.contextmanager
def instance_log(spec: LaunchSpec, suffix: str, what: str) -> Iterator[Stdio]:
    """``open_log`` for a launch, entered *before* ``t_launch``: creating the log directory,
    file and pipes is the harness's bookkeeping, not the instance's start, and every backend
    opens its log outside the timed window (the guests' console logs too).  The run's owner
    record (``runtimes.owners``) is made here too, once per run.  When the block ends the
    harness's copies of the child's ends are closed; on an error the whole ``Stdio`` is
    (otherwise the instance owns it: ``ProcessInstance`` closes it in its teardown).  A log
    that cannot be opened is one ``BackendError("<what>: <error>")``, before anything of the
    instance exists."""
    try:
        owners.claim(spec.run_id)
        readiness.prepare(spec.workload.ready)  # what a readiness probe needs, made before t_launch too
        stdio = open_log(spec, suffix)
    except OSError as e:
        raise BackendError(f"{what}: {e}") from e
    try:
        yield stdio
    except BaseException:
        stdio.close()
        raise
    finally:
        stdio.spawned()


@contextlib.contextmanager
def undone_on_failure(undo: Callable[[], object], what: str,
                      errors: tuple[type[Exception], ...] = (OSError,)) -> Iterator[None]:
    """Around a step that follows the making of something ``undo`` removes: on any exception it
    is undone, and one of ``errors`` becomes one readable ``BackendError("<what>: <error>")``."""
    try:
        yield
    except errors as e:
        undo()
        raise BackendError(f"{what}: {e}") from e
    except BaseException:
        undo()
        raise


def launching(inst: Instance, what: str) -> contextlib.AbstractContextManager[None]:
    """Around the start of a created instance: nothing half-created survives a failure.

    On any exception ``inst`` is cleaned up; an OSError becomes one readable
    ``BackendError("<what>: <error>")``.
    """
    return undone_on_failure(inst.cleanup, what)


def kill_and_reap(pid: int) -> None:
    """SIGKILL a child of ours and collect it, so it leaves no zombie (either may be done already)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def reaped(pid: int) -> bool:
    """Collect a child of ours if it has exited; True once it is gone (or no child of ours)."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return bool(done)


class ChildProcess:
    """The container's PID 1 as seen from the harness: the slice of ``Popen`` ProcessInstance uses.

    Thread-safe: measurements wait for the exit in one thread while another
    stops and cleans up.  The pidfd (to wait with a timeout) is closed only when
    no thread is waiting on it, so its number is never reused under a waiter.
    """

    def __init__(self, pid: int):
        self.pid = pid
        self.returncode: int | None = None
        self._lock = threading.Lock()
        self._pidfd: int | None = os.pidfd_open(pid)
        self._waiters = 0

    def _reaped(self, status: int) -> None:  # with the lock held
        self.returncode = os.waitstatus_to_exitcode(status)
        self._close_pidfd()

    def _close_pidfd(self) -> None:  # with the lock held
        if self._pidfd is not None and self._waiters == 0 and self.returncode is not None:
            os.close(self._pidfd)
            self._pidfd = None

    def poll(self) -> int | None:
        with self._lock:
            if self.returncode is None:
                try:
                    done, status = os.waitpid(self.pid, os.WNOHANG)
                except ChildProcessError:  # reaped elsewhere: the status is lost
                    done, status = self.pid, 255 << 8
                if done:
                    self._reaped(status)
            return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Like ``Popen.wait``: the exit code, ``-signal``; TimeoutExpired after ``timeout``."""
        with self._lock:
            fd = self._pidfd
            self._waiters += 1
        try:
            if self.poll() is None and fd is not None and not select.select([fd], [], [], timeout)[0]:
                raise subprocess.TimeoutExpired([str(self.pid)], timeout or 0)
        finally:
            with self._lock:
                self._waiters -= 1
                self._close_pidfd()
        with self._lock:
            if self.returncode is None:  # the pidfd said it exited: this does not block
                try:
                    _, status = os.waitpid(self.pid, 0)
                except ChildProcessError:
                    status = 255 << 8
                self._reaped(status)
            assert self.returncode is not None  # set by _reaped
            return self.returncode


class ProcessInstance(Instance):
    """A workload run as a host process tree (bare; the base of process-like backends)."""

    #: the workload's stdio (``runtimes.stdio``), owned from the launch on: closed in the teardown
    stdio: Stdio | None = None
    #: the workload has a network namespace of its own (probes enter it; bare: the host's)
    own_netns = False
    #: its ``lo`` is down until someone brings it up (unshare(1)): the probe does
    lo_down = False
    #: ``proc`` is a launcher whose (first) child is the workload (unshare(1) --fork)
    forks = False
    #: ``proc`` gets an image's environment (it is the workload, or a launcher that passes its own
    #: on); False: a runtime that sets the workload's environment itself (runc, crun, podman)
    workload_env = True

    def __init__(self, spec: LaunchSpec, cgroup: Cgroup | None, times: Timestamps, stdio: Stdio | None = None):
        self.spec = spec
        self.stdio = stdio
        self.log_path = stdio.path if stdio is not None else None
        self.name = spec.instance
        self.times = times
        self.cgroup = cgroup
        self.marker = MarkerChannel()
        self.results = self.marker.results
        self.proc: subprocess.Popen[bytes] | None = None
        self.returncode: int | None = None
        #: catalog workloads report on fd 3; an image's process gets no fd 3 at all
        self.uses_marker = spec.workload.ready.kind == "marker"

    def _env(self) -> Mapping[str, str]:
        """``extra["env"]`` when the caller gives one (e.g. a container's environment, for a like
        for like memory reference), else an image's process environment, else the harness's own."""
        env = self.spec.extra.get("env")
        if env is not None:
            return dict(env)
        process = self.spec.workload.process
        return dict(process.env) if process is not None and self.workload_env else os.environ

    def _spawn(self, argv: list[str], preexec: Any = None) -> None:
        cg_files = [str(p) for p in self.cgroup.procs_files()] if self.cgroup else []
        if not cg_files and preexec is None:
            self._posix_spawn(argv)
            return
        assert self.stdio is not None
        stdin, out, err = self.stdio.child
        marker = self.uses_marker
        r, w = os.pipe()

        def child() -> None:
            # Runs in the child between fork and exec: join the cgroup first, so
            # everything the workload forks is counted and limited.
            join_self(cg_files)
            if marker:
                os.dup2(w, MARKER_FD)
            if preexec is not None:
                preexec()

        try:
            self.proc = subprocess.Popen(
                argv, stdin=stdin, stdout=out, stderr=err, pass_fds=(MARKER_FD,) if marker else (),
                env=self._env(), preexec_fn=child, start_new_session=True)
        except BaseException:
            os.close(r)
            raise
        finally:
            os.close(w)
        self._read_marker(r)

    def _read_marker(self, r: int) -> None:
        """The marker pipe's read end: read (catalog), or closed at once (an image's process has none)."""
        if self.uses_marker:
            self.marker.read_fd(r)
        else:
            os.close(r)
            self.marker.close()

    def _posix_spawn(self, argv: list[str], marker_fd: int = MARKER_FD) -> None:
        """posix_spawn ``argv`` with the stdio pipes on 0-2 and the marker pipe on fd 3: a vfork,
        so the harness's own size costs nothing (a full fork of the Python harness, as a
        ``preexec_fn`` forces, costs milliseconds).  Used whenever no code has to run in the
        child before exec.  ``marker_fd`` 1 puts the marker pipe on stdout instead of the stdout
        pipe (runsc hands a container only its stdio)."""
        assert self.stdio is not None
        r, w = os.pipe()
        high = fcntl.fcntl(w, fcntl.F_DUPFD_CLOEXEC, 64)  # never on 0-3, so every dup2 below is real
        os.close(w)
        # the stdio fds are the harness's (close-on-exec, above 2 unless its own 0-2 were closed)
        actions: list[tuple[Any, ...]] = [(os.POSIX_SPAWN_DUP2, fd, target)
                                          for target, fd in enumerate(self.stdio.child)]
        if self.uses_marker:
            actions.append((os.POSIX_SPAWN_DUP2, high, marker_fd))
        try:
            pid = os.posix_spawnp(argv[0], argv, self._env(), file_actions=actions, setsid=True)
        except BaseException:
            os.close(r)
            raise
        finally:
            os.close(high)
        self.proc = ChildProcess(pid)  # type: ignore[assignment]
        self._read_marker(r)

    def wait_ready(self, timeout: float) -> int:
        ready = self.spec.workload.ready
        if ready.kind == "marker":
            self.times.t_ready = self.marker.wait_ready(timeout, self.name)
        else:
            self.times.t_ready = readiness.wait(ready, self.probe_target(), timeout)
        return self.times.t_ready

    def probe_target(self) -> readiness.Target:
        """What a readiness probe needs of this instance (``runtimes.readiness``)."""
        return readiness.Target(self.name, self._exited, self._probe_pids, own_netns=self.own_netns,
                                lo_up=self.lo_down, lines=self.stdio.watch if self.stdio is not None else None,
                                wait_exit=self._wait_exit)

    def _probe_pids(self) -> list[int]:
        """``processes()`` without psutil (whose first import, ~70 ms, would land in t_ready)."""
        if self.cgroup is not None or self.proc is None:
            return self.processes()
        return readiness.descendants(self.proc.pid)

    def _exited(self) -> int | None:
        return self.proc.poll() if self.proc is not None else None

    def _wait_exit(self, timeout: float) -> tuple[int, int | None]:
        """``ready = exit``: the status and ``t_exit`` (an OCI runtime's is the container's exit)."""
        status = self.wait(timeout)
        return status, self.times.t_exit

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        try:
            self.returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired as e:
            raise InstanceTimeout(f"{self.name}: still running after {timeout:g} s") from e
        if self.times.t_exit is None:
            self.times.t_exit = self._exit_time()
        self.marker.join(1.0)
        return self.returncode

    def _exit_time(self) -> int | None:
        """``t_exit``, called once the child is reaped: now, the moment the harness learnt of the
        exit (a backend whose child is not the workload itself says when the workload exited)."""
        return now_ns()

    def processes(self) -> list[int]:
        if self.cgroup is not None and not self.cgroup.removed:
            return self.cgroup.pids()
        if self.proc is None or self.proc.poll() is not None:
            return []
        import psutil  # here, not at the top: declarations importing this module stay stdlib-only

        try:
            root = psutil.Process(self.proc.pid)
            return [root.pid] + [c.pid for c in root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def stop(self) -> None:
        self._stop_gracefully()
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        if self.cgroup is not None and not self.cgroup.removed:
            self.cgroup.kill()

    def _stop_gracefully(self) -> None:
        """An image workload's stop: its stop signal, then up to its grace for it to exit (the
        caller kills what is left).  Catalog workloads are killed at once."""
        sig, grace = self.spec.workload.stop_signal, self.spec.workload.stop_grace_s
        if sig is None or sig == signal.SIGKILL or self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self._signal(sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(grace)

    def _signal(self, sig: int) -> None:
        """Deliver the stop signal to the workload's process: ours, or (``forks``: unshare(1)
        --fork, which does not pass signals on) its child."""
        assert self.proc is not None
        target = self.proc.pid
        if self.forks:
            target = next(iter(readiness.descendants(self.proc.pid)[1:]), target)
        os.kill(target, sig)

    def _teardown(self) -> None:
        try:
            self.stop()
            if self.proc is not None:
                self.proc.wait()
                if self.times.t_exit is None:
                    self.times.t_exit = self._exit_time()
        finally:  # even when stop() failed: what can be removed is removed
            self._release()
        self.marker.join(1.0)

    def cleanup(self) -> None:
        """``Instance.cleanup``, then the rest of the workload's output is copied and the log
        closed: after ``t_clean``, as the harness's own bookkeeping (the instance is gone by
        then; its output's EOF came with its exit, unless something it left holds the pipe).
        A log nothing was written to is removed (``log_path`` becomes None)."""
        try:
            super().cleanup()
        finally:
            if self.stdio is not None:
                self.stdio.drain(OUTPUT_DRAIN_S)
                self.stdio.close()
                self.log_path = self.stdio.path

    def _release(self) -> None:
        """What is left on the host once the process is reaped (cleanup's backend-specific step)."""
        if self.proc is not None:
            # orphans left in the session when there is no cgroup to sweep
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        if self.cgroup is not None:
            self.cgroup.remove()
