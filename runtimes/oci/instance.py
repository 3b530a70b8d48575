"""One container run by an OCI runtime in the foreground (``runtimes.oci.backend`` launches it):
its exit, what measurements read of it, how it ends and what is removed after it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from pathlib import Path

from runtimes import cgroups, exits
from runtimes.base import BackendError, LaunchSpec, Timestamps, now_ns
from runtimes.cgroups import CgroupError
from runtimes.image.rundir import Upper
from runtimes.oci import bundle, mounter, view
from runtimes.oci.cli import Cli, find_runtime
from runtimes.process import ProcessInstance
from runtimes.stdio import Stdio

#: how long the runtime may take to exit once its container's processes are killed
STOP_GRACE_S = 5.0


class OciInstance(ProcessInstance):
    """One container run by an OCI runtime in the foreground; ``proc`` is the runtime."""

    own_netns, workload_env = True, False  # (config.json carries an image's env, not the runtime's)
    upper: Upper | None = None  # an image instance's own layer, mounted by ``helper`` in the view
    helper: mounter.Mounter | None = None

    def __init__(self, spec: LaunchSpec, times: Timestamps, exit_events: exits.ExitEvents | None, v: view.View,
                 bundle_dir: Path, stdio: Stdio, cli: Cli):
        super().__init__(spec, None, times, stdio)
        self.runtime = cli.runtime
        self.cli = cli
        self.accel = cli.platform  # runsc's platform; None for runc and crun
        self.view = v
        self.bundle_dir = bundle_dir
        self.exit_events = exit_events
        #: when the harness reaped the runtime (after its delete); set with t_exit
        self.t_runtime_exit: int | None = None
        #: the host process whose exit is the container's, where that is not the runtime's last
        #: child (runsc's Sentry), read from the bundle before it is removed
        self.sandbox_pid: int | None = None

    def spawn(self, argv: list[str]) -> None:
        """The runtime, with the stdio pipes as its 0-2: in the foreground it hands them to the
        container's process as they are (a pipe, never a file of the host); the marker pipe on
        the descriptor the runtime hands on (runsc: its stdout)."""
        self._posix_spawn(argv, marker_fd=self.cli.marker_fd)

    def _exit_time(self) -> int | None:
        """Called once the runtime is reaped (it has deleted the container by then).  With the
        kernel's exit events, ``t_exit`` is looked up after ``cleanup`` (``_resolve_exit``), so
        reading the events costs nothing inside exit -> clean; without them it is now."""
        if self.t_runtime_exit is None:
            self.t_runtime_exit = now_ns()
            self.sandbox_pid = self.cli.sandbox_pid(self.bundle_dir)
        return self.t_runtime_exit if self.exit_events is None else None

    def cleanup(self) -> None:
        super().cleanup()
        self._resolve_exit()

    def _wait_exit(self, timeout: float) -> tuple[int, int | None]:
        """``ready = exit``: the container process's exit (the kernel's event), not the runtime's."""
        status = self.wait(timeout)
        self._resolve_exit()
        return status, self.times.t_exit or self.t_runtime_exit

    def _resolve_exit(self) -> None:
        """``t_exit`` = the exit of the container's process (the runtime's last child to end), not
        the runtime's own, which came after the delete.  The kernel's time of the exit can
        precede the *receipt* of the ready line the workload wrote before it (a reader thread
        that woke late on a loaded host): the host knows of the exit no earlier than of the
        ready, so it is never before ``t_ready``, as on every backend.  Stays None when the
        kernel's event was lost (its queue overflowed): the sample then fails, saying so."""
        if self.times.t_exit is not None or self.exit_events is None or self.proc is None:
            return
        assert self.times.t_launch is not None
        if self.sandbox_pid is not None:  # runsc: the Sentry's exit stands for the workload's
            t = self.exit_events.exit_of(self.sandbox_pid, self.times.t_launch)
        else:
            t = self.exit_events.last_child_exit(self.proc.pid, self.times.t_launch)
        if t is None:
            return
        if self.times.t_ready is not None:
            t = max(t, self.times.t_ready)
        self.times.t_exit = t

    # -- what measurements read -----------------------------------------------------
    def processes(self) -> list[int]:
        """The runtime process (it stays for the container's lifetime) and the container's."""
        pids = self.cgroup.pids() if self.cgroup is not None and not self.cgroup.removed else []
        if self.proc is not None and self.proc.poll() is None:
            pids = [self.proc.pid, *(p for p in pids if p != self.proc.pid)]
        return pids

    # -- ending it ------------------------------------------------------------------
    def stop(self) -> None:
        """SIGKILL the container's processes (its cgroup); the runtime then deletes it and exits."""
        self._stop_gracefully()  # an image's stop signal first: to the runtime, which passes it on
        if self.proc is None or self.proc.poll() is not None:
            return
        if self.cgroup is not None:
            with contextlib.suppress(CgroupError):
                self.cgroup.kill(timeout=STOP_GRACE_S)
        try:
            self.proc.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            # still setting up (no cgroup yet) or stuck: take the runtime and what it
            # started (same process group) down; cleanup's delete --force does the rest
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)

    def _release(self) -> None:
        """After the runtime is reaped: its state, cgroups, bundle (and an image instance's root)."""
        try:
            self._delete()
            self._remove_cgroups()
            bundle.remove(self.bundle_dir)
        finally:
            mounter.release_root(self.helper, self.upper)

    def _delete(self) -> None:
        """``delete --force`` when the runtime left its state behind (it was killed)."""
        if not self.cli.state(self.name):
            return
        t0 = now_ns()
        delete_container(self.cli, self.name, self.view)
        self.times.phases["delete"] = now_ns() - t0

    def _remove_cgroups(self) -> None:
        """Whatever cgroup of the container is still there (the runtime removes them normally)."""
        if self.cgroup is not None:
            self.cgroup.remove()
        for d in self.view.dirs(self.name):
            if d.is_dir():
                cgroups.remove_dir(d)


def delete_container(cli: Cli, name: str, v: view.View) -> None:
    """``delete --force`` a container (in the view it was started in), then what its runtime
    keeps of it after a delete (runsc: the ``.lock`` of a sandbox that was killed)."""
    if find_runtime(cli.runtime) is not None:
        r = view.run(cli.delete(name), v)
        if r.returncode != 0 and cli.state(name):
            raise BackendError(f"{cli.runtime} delete --force {name} failed: {r.stderr.strip()}")
    remove_state(cli, name)


def remove_state(cli: Cli, name: str) -> None:
    """What the runtime's state root still holds of container ``name``, removed."""
    for p in cli.state(name):
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
