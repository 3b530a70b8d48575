"""The ``oci:runc`` and ``oci:crun`` backends: the workload through an established OCI runtime.

Each launch writes a bundle (``runtimes.oci.bundle``: same rootfs, namespaces,
mounts and limits as the built-in container) under ``/run/isobench-oci/bundles``
and runs ``<runtime> --root /run/isobench-oci/<runtime> run --preserve-fds 1
-b <bundle> <name>`` in the foreground, as a child of the harness whose fd 3
is the marker pipe's write end; the runtime hands fd 3 on to the workload.
The runtime is started with ``posix_spawn`` through ``nsenter`` into the
mount namespace of ``runtimes.oci.view`` (where its cgroups land below ours),
so it costs what starting it from a small shim would, plus one exec.

Timing contract as everywhere: ``t_ready`` when the ready line arrives on the
pipe; ``t_exit`` when the container's process exited -- the kernel's exit event
of the runtime's child (``runtimes.exits``), since in the foreground the
runtime reaps it and deletes the container (cgroups, state) *before* it exits
itself: that delete is teardown, counted in exit -> clean as the cgroup removal
of ``bare``/``container`` and a guest's power-off are; ``t_clean`` once the
runtime has exited, ``delete --force`` (only needed if it died before deleting)
ran and the bundle directory is gone.  Where the kernel gives no exit events
(no proc connector) ``t_exit`` is the runtime's exit and the metadata says so.
The log file and the state/bundle parent directories are made before
``t_launch``, as every backend makes its log; the bundle itself is the
instance's and is written inside the window.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

from runtimes import cgroups, exits, owners, rootfs
from runtimes.base import PREFIX, Backend, BackendError, Instance, LaunchSpec, Timestamps, now_ns
from runtimes.cgroups import CgroupError
from runtimes.container.security import caps as container_caps
from runtimes.container.security import seccomp as container_seccomp
from runtimes.naming import of_run
from runtimes.oci import bundle, runsc, view
from runtimes.oci.cli import Cli, Crun, find_runtime, runtime_version
from runtimes.process import ProcessInstance, instance_log, launching
from runtimes.stdio import Stdio
from runtimes.vm.accel import Verdict
from runtimes.workloads import Workload

RUNTIMES = ("runc", "crun", "runsc")
#: everything the oci backends keep on the host: state roots and bundles
STATE_BASE = Path(os.environ.get("ISOBENCH_OCI_STATE", f"/run/{PREFIX}-oci"))
#: how long the runtime may take to exit once its container's processes are killed
STOP_GRACE_S = 5.0


def state_root(runtime: str) -> Path:
    return STATE_BASE / runtime


def bundles_dir() -> Path:
    return STATE_BASE / "bundles"


def runtime_cli(runtime: str, exe: str | None = None, platform: str = runsc.DEFAULT_PLATFORM,
                oci_seccomp: bool = True) -> Cli:
    """How ``runtime`` is driven (``runtimes.oci.cli``); runsc on ``platform``."""
    exe = exe or find_runtime(runtime) or runtime
    if runtime == "runsc":
        return runsc.Runsc(exe, state_root(runtime), platform, oci_seccomp)
    return (Crun if runtime == "crun" else Cli)(runtime, exe, state_root(runtime))


class OciInstance(ProcessInstance):
    """One container run by an OCI runtime in the foreground; ``proc`` is the runtime."""

    def __init__(self, spec: LaunchSpec, times: Timestamps, backend: OciBackend, v: view.View, bundle_dir: Path,
                 stdio: Stdio, cli: Cli):
        super().__init__(spec, None, times, stdio)
        self.runtime = backend.runtime
        self.cli = cli
        self.accel = cli.platform  # runsc's platform; None for runc and crun
        self.view = v
        self.bundle_dir = bundle_dir
        self.exit_events = backend._exits
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
        """After the runtime is reaped (ProcessInstance.cleanup): its state, cgroups and bundle."""
        self._delete()
        self._remove_cgroups()
        bundle.remove(self.bundle_dir)

    def _delete(self) -> None:
        """``delete --force`` when the runtime left its state behind (it was killed)."""
        if not self.cli.state(self.name):
            return
        t0 = now_ns()
        _delete(self.cli, self.name, self.view)
        self.times.phases["delete"] = now_ns() - t0

    def _remove_cgroups(self) -> None:
        """Whatever cgroup of the container is still there (the runtime removes them normally)."""
        if self.cgroup is not None:
            self.cgroup.remove()
        for d in self.view.dirs(self.name):
            if d.is_dir():
                cgroups.remove_dir(d)


class OciBackend(Backend):
    """``OciBackend(name="oci:runc")`` or ``OciBackend(name="oci:crun")``."""

    def __init__(self, name: str = "oci:runc", seccomp: str = container_seccomp.DEFAULT, platform: str | None = None):
        runtime = name.removeprefix("oci:")
        if not name.startswith("oci:") or runtime not in RUNTIMES:
            raise ValueError(f"unknown OCI backend {name!r} (known: {', '.join('oci:' + r for r in RUNTIMES)})")
        self.name = name
        self.runtime = runtime
        self.exe = find_runtime(runtime) or runtime
        self._rootfs: Path | None = None
        self._view: view.View | None = None
        self._cgroup_version: int | None = None
        self._memsw: bool | None = None
        self._holder: view.Holder | None = None
        #: the kernel's exit events (None: no proc connector here, ``_exits_error`` says why)
        self._exits: exits.ExitEvents | None = None
        self._exits_error: str | None = None
        #: the built-in container's profile name; the bundle carries its resolved OCI form
        self.seccomp = seccomp
        self._seccomp: dict[str, Any] | None = None
        #: runsc's platform as asked (``auto``: decided by ``prepare``); None for runc and crun
        self.platform = platform
        self._platform: Verdict | None = None

    def available(self) -> str | None:
        if find_runtime(self.runtime) is None:
            return f"{self.runtime} not found (fix: apt-get install {self.runtime})"
        if find_runtime("nsenter") is None:
            return "nsenter not found (fix: apt-get install util-linux)"
        if os.geteuid() != 0:
            return f"{self.runtime} needs root here (rootless OCI is not compared)"
        reason = container_seccomp.check(self.seccomp)
        if reason:
            return reason
        try:
            self._prepare()
        except (rootfs.RootfsError, CgroupError, OSError) as e:
            return f"cannot prepare {self.name}: {e}"
        return None

    def _prepare(self) -> tuple[Path, view.View, view.Holder]:
        """What every launch reuses: the rootfs, the cgroup view and its holder, host facts."""
        if self._rootfs is None:
            self._rootfs = rootfs.build()
        if self._view is None:
            self._cgroup_version = cgroups.version()
            self._memsw = view.memsw_supported(self._cgroup_version)
            self._view = view.make(hide_cgroup2_on_hybrid=runtime_cli(self.runtime, self.exe).hide_cgroup2)
        if self._holder is None or not self._holder.alive():
            self._holder = view.Holder(self._view)  # owned by whoever owns this backend (close())
        if self._exits is None and self._exits_error is None:
            try:
                self._exits = exits.ExitEvents()  # closed by close(), as the holder
            except OSError as e:
                self._exits_error = f"no proc connector: {e.strerror or e}"
        return self._rootfs, self._view, self._holder

    def prepare(self) -> None:
        """runsc's platform, decided once: as asked, or for ``auto`` by a probe sandbox on KVM."""
        if self.platform is not None and self._platform is None:
            try:
                self._platform = runsc.platform(self.platform, runtime_version(self.exe) or "unknown",
                                                self._probe, rootfs.cache_dir())
            except ValueError as e:
                raise BackendError(str(e)) from e

    def _platform_for(self, requested: str | None) -> str:
        if requested != "auto":
            return requested or runsc.DEFAULT_PLATFORM
        self.prepare()
        assert self._platform is not None
        return self._platform.accel

    def _probe(self, timeout: float) -> str | None:
        """Does a noop sandbox on the KVM platform reach its ready marker in time? (None: yes)"""
        spec = LaunchSpec(Workload("noop"), "runscprobe", f"{PREFIX}-runscprobe-{os.getpid()}", timeout_s=timeout,
                          extra={"platform": "kvm"})
        try:
            with self.launch(spec) as inst:
                inst.wait_ready(timeout)
        except BackendError as e:  # a timeout is one
            return str(e)
        return None

    def close(self) -> None:
        """Let the namespace holder go (it exits when its pipe closes)."""
        if self._holder is not None:
            self._holder.close()
            self._holder = None
        if self._exits is not None:
            self._exits.close()
            self._exits = None
        self._exits_error = None

    def launch(self, spec: LaunchSpec) -> Instance:
        try:
            cgroups.validate_limits(spec.limits)
        except CgroupError as e:
            raise BackendError(str(e)) from e
        if spec.limits.cpu_burst_us is not None:  # runtime-spec 1.1's cpu.burst: not in every runc/crun
            raise BackendError("cpu burst is not passed to OCI runtimes by isobench (runtime-spec 1.1 cpu.burst)")
        root, v, holder = self._prepare()
        try:  # resolved and compiled once (cached), before t_launch
            flt = container_seccomp.prepare(spec.extra.get("seccomp") or self.seccomp, container_caps.OCI_DEFAULT)
        except container_seccomp.SeccompError as e:
            raise BackendError(str(e)) from e
        self._seccomp = dict(flt.oci) if flt is not None else None
        assert self._cgroup_version is not None and self._memsw is not None
        requested = spec.extra.get("platform") or self.platform
        cli = runtime_cli(self.runtime, self.exe, self._platform_for(requested) if requested else
                          runsc.DEFAULT_PLATFORM, oci_seccomp=self._seccomp is not None)
        nsenter = holder.nsenter(find_runtime("nsenter") or "nsenter")  # a PATH search: not timed
        bundle_dir = bundles_dir() / spec.instance
        argv = nsenter + cli.run(bundle_dir, spec.instance)
        # instance-independent setup before t_launch, as for every backend: the parent
        # directories (once per host), the log, and what the exit events queued meanwhile
        bundles_dir().mkdir(parents=True, exist_ok=True, mode=0o700)
        state_root(self.runtime).mkdir(parents=True, exist_ok=True, mode=0o700)
        if self._exits is not None:
            self._exits.drain()
        what = f"cannot start {self.runtime}"
        with instance_log(spec, self.name.replace(":", "-"), what) as stdio:
            times = Timestamps(t_launch=now_ns())
            cfg = bundle.config(spec, root, f"/{spec.instance}", cgroup_version=self._cgroup_version,
                                memsw=self._memsw, seccomp=self._seccomp, wrap_argv=cli.argv)
            try:
                bundle.write(bundle_dir, cfg)
            except FileExistsError as e:
                raise BackendError(f"bundle {bundle_dir} exists: a container of that name is running "
                                   f"or was left behind (isobench cleanup)") from e
            times.phases["bundle"] = times.since_launch()
            inst = OciInstance(spec, times, self, v, bundle_dir, stdio, cli)
            with launching(inst, what):
                inst.spawn(argv)
        # the directories the runtime creates for cgroupsPath /<name>, seen from the host
        inst.cgroup = view.container_cgroup(spec.instance, self._cgroup_version, v)
        return inst

    def metadata(self) -> dict[str, Any]:
        exe = find_runtime(self.runtime)
        cli = runtime_cli(self.runtime, exe, self._platform.accel if self._platform else runsc.DEFAULT_PLATFORM)
        meta: dict[str, Any] = {"runtime": self.runtime, "path": exe,
                                "version": runtime_version(exe) if exe else None,
                                **cli.metadata(), "state_root": str(state_root(self.runtime))}
        if self._platform is not None:  # runsc: the platform is its accelerator, on every figure
            meta.update(accel=self._platform.accel, platform_reason=self._platform.reason)
        if self._view is not None:
            meta["cgroup_view"] = self._view.describe()
        meta["spawn"] = "posix_spawn of nsenter --mount (the view) -- runtime"
        meta["t_exit"] = (f"the kernel's exit event of {cli.exit_words} (proc connector), "
                          "before the runtime deletes the container" if self._exits is not None else
                          f"the runtime's exit, after it deleted the container ({self._exits_error or 'not prepared'})")
        return meta


# -- leftovers ------------------------------------------------------------------------


def _leftover_names(run_id: str | None) -> dict[str, set[str]]:
    """runtime -> names of isobench containers in its state root (plus "" -> orphan bundles),
    of ``run_id`` if given, and of no run whose owner lives (``runtimes.owners``)."""
    out: dict[str, set[str]] = {}
    live = owners.live()

    def leftover(name: str) -> bool:
        return (of_run(name, run_id) if run_id else name.startswith(f"{PREFIX}-")) and not live.owns(name)

    for rt in RUNTIMES:
        out[rt] = {n for n in runtime_cli(rt).names() if leftover(n)}
    with contextlib.suppress(FileNotFoundError):
        out[""] = {p.name for p in bundles_dir().iterdir() if leftover(p.name)}
    return out


def cleanup_leftovers(run_id: str | None = None) -> list[str]:
    """Delete leftover isobench containers from each runtime's state root, then their bundles.

    Each ``delete --force`` runs in the same cgroup view as the launch did, so
    the runtime finds (and kills, and removes) the cgroups it recorded.
    Returns what was removed, in words.
    """
    removed: list[str] = []
    names = _leftover_names(run_id)
    for rt in RUNTIMES:
        if not names.get(rt):
            continue
        cli = runtime_cli(rt)
        v = view.make(hide_cgroup2_on_hybrid=cli.hide_cgroup2)
        for name in sorted(names[rt]):
            with contextlib.suppress(BackendError):  # what is left is removed below
                _delete(cli, name, v)
            _remove_state(cli, name)
            for d in v.dirs(name):
                if d.is_dir():
                    cgroups.remove_dir(d)
            removed.append(f"oci container {name} ({rt})")
    all_names = set().union(*names.values()) if names else set()
    for name in sorted(all_names):
        d = bundles_dir() / name
        if d.exists():
            bundle.remove(d)
            removed.append(f"oci bundle {d}")
    return removed


def _delete(cli: Cli, name: str, v: view.View) -> None:
    """``delete --force`` a container (in the view it was started in), then what its runtime
    keeps of it after a delete (runsc: the ``.lock`` of a sandbox that was killed)."""
    if find_runtime(cli.runtime) is not None:
        r = view.run(cli.delete(name), v)
        if r.returncode != 0 and cli.state(name):
            raise BackendError(f"{cli.runtime} delete --force {name} failed: {r.stderr.strip()}")
    _remove_state(cli, name)


def _remove_state(cli: Cli, name: str) -> None:
    for p in cli.state(name):
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
