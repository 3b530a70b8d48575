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
import re
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

from runtimes import cgroups, exits, owners, rootfs
from runtimes.base import PREFIX, Backend, BackendError, Instance, LaunchSpec, Timestamps, now_ns
from runtimes.cgroups import Cgroup, CgroupError
from runtimes.container.security import caps as container_caps
from runtimes.container.security import seccomp as container_seccomp
from runtimes.naming import of_run
from runtimes.oci import bundle, view
from runtimes.process import ProcessInstance, instance_log, launching
from runtimes.stdio import Stdio

RUNTIMES = ("runc", "crun")
#: everything the oci backends keep on the host: state roots and bundles
STATE_BASE = Path(os.environ.get("ISOBENCH_OCI_STATE", f"/run/{PREFIX}-oci"))
#: how long the runtime may take to exit once its container's processes are killed
STOP_GRACE_S = 5.0


def state_root(runtime: str) -> Path:
    return STATE_BASE / runtime


def bundles_dir() -> Path:
    return STATE_BASE / "bundles"


def find_runtime(runtime: str) -> str | None:
    """The runtime binary: on PATH, else where Debian puts it (runc in /usr/sbin)."""
    found = shutil.which(runtime)
    if found:
        return found
    for d in ("/usr/sbin", "/usr/bin", "/usr/local/bin", "/usr/local/sbin"):
        if os.access(f"{d}/{runtime}", os.X_OK):
            return f"{d}/{runtime}"
    return None


def runtime_version(exe: str) -> str | None:
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=10, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"version\s+(\S+)", out)
    return m.group(1) if m else None


def _memsw_supported(v: int) -> bool:
    """Whether the host can limit swap, so the bundle may ask for "no swap" (as Cgroup.apply)."""
    if v == 2:
        parent = cgroups.parent_dirs(2)[""]
        return (parent / "memory.swap.max").exists() or not (parent / "memory.max").exists()
    mem = cgroups.parent_dirs(1)["memory"]
    return (mem / "memory.memsw.limit_in_bytes").exists()


def _runtime_cmd(exe: str, runtime: str, *args: str) -> list[str]:
    return [exe, "--root", str(state_root(runtime)), *args]


def _run_in_view(argv: list[str], v: view.View, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
                          preexec_fn=v.enter, check=False)


class OciInstance(ProcessInstance):
    """One container run by an OCI runtime in the foreground; ``proc`` is the runtime."""

    def __init__(self, spec: LaunchSpec, times: Timestamps, backend: OciBackend, v: view.View, bundle_dir: Path,
                 stdio: Stdio):
        super().__init__(spec, None, times, stdio)
        self.runtime = backend.runtime
        self.exe = backend.exe
        self.view = v
        self.bundle_dir = bundle_dir
        self.exit_events = backend._exits
        #: when the harness reaped the runtime (after its delete); set with t_exit
        self.t_runtime_exit: int | None = None

    def spawn(self, argv: list[str]) -> None:
        """The runtime, with the stdio pipes as its 0-2: in the foreground it hands them to the
        container's process as they are (a pipe, never a file of the host)."""
        self._posix_spawn(argv)

    def _exit_time(self) -> int | None:
        """Called once the runtime is reaped (it has deleted the container by then).  With the
        kernel's exit events, ``t_exit`` is looked up after ``cleanup`` (``_resolve_exit``), so
        reading the events costs nothing inside exit -> clean; without them it is now."""
        if self.t_runtime_exit is None:
            self.t_runtime_exit = now_ns()
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
        if not (state_root(self.runtime) / self.name).exists():
            return
        t0 = now_ns()
        r = _run_in_view(_runtime_cmd(self.exe, self.runtime, "delete", "--force", self.name), self.view)
        self.times.phases["delete"] = now_ns() - t0
        if r.returncode != 0 and (state_root(self.runtime) / self.name).exists():
            raise BackendError(f"{self.runtime} delete --force {self.name} failed: {r.stderr.strip()}")

    def _remove_cgroups(self) -> None:
        """Whatever cgroup of the container is still there (the runtime removes them normally)."""
        if self.cgroup is not None:
            self.cgroup.remove()
        for d in self.view.dirs(self.name):
            if d.is_dir():
                cgroups.remove_dir(d)


class OciBackend(Backend):
    """``OciBackend(name="oci:runc")`` or ``OciBackend(name="oci:crun")``."""

    def __init__(self, name: str = "oci:runc", seccomp: str = container_seccomp.DEFAULT):
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
            self._memsw = _memsw_supported(self._cgroup_version)
            self._view = view.make(hide_cgroup2_on_hybrid=self.runtime == "crun")
        if self._holder is None or not self._holder.alive():
            self._holder = view.Holder(self._view)  # owned by whoever owns this backend (close())
        if self._exits is None and self._exits_error is None:
            try:
                self._exits = exits.ExitEvents()  # closed by close(), as the holder
            except OSError as e:
                self._exits_error = f"no proc connector: {e.strerror or e}"
        return self._rootfs, self._view, self._holder

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
        nsenter = holder.nsenter(find_runtime("nsenter") or "nsenter")  # a PATH search: not timed
        bundle_dir = bundles_dir() / spec.instance
        argv = nsenter + _runtime_cmd(
            self.exe, self.runtime, "run", "--preserve-fds", "1", "-b", str(bundle_dir), spec.instance)
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
                                memsw=self._memsw, seccomp=self._seccomp)
            try:
                bundle.write(bundle_dir, cfg)
            except FileExistsError as e:
                raise BackendError(f"bundle {bundle_dir} exists: a container of that name is running "
                                   f"or was left behind (isobench cleanup)") from e
            times.phases["bundle"] = now_ns() - times.t_launch  # type: ignore[operator]
            inst = OciInstance(spec, times, self, v, bundle_dir, stdio)
            with launching(inst, what):
                inst.spawn(argv)
        # the directories the runtime creates for cgroupsPath /<name>, seen from the host
        inst.cgroup = _container_cgroup(spec.instance, self._cgroup_version, v)
        return inst

    def metadata(self) -> dict[str, Any]:
        exe = find_runtime(self.runtime)
        meta: dict[str, Any] = {"runtime": self.runtime, "path": exe,
                                "version": runtime_version(exe) if exe else None,
                                "launch": "run --preserve-fds 1 (foreground)",
                                "state_root": str(state_root(self.runtime))}
        if self._view is not None:
            meta["cgroup_view"] = self._view.describe()
        meta["spawn"] = "posix_spawn of nsenter --mount (the view) -- runtime"
        meta["t_exit"] = ("the kernel's exit event of the container's process (proc connector), "
                          "before the runtime deletes the container" if self._exits is not None else
                          f"the runtime's exit, after it deleted the container ({self._exits_error or 'not prepared'})")
        return meta


def _container_cgroup(name: str, version: int, v: view.View) -> Cgroup:
    """A ``Cgroup`` over the directories the runtime makes for cgroupsPath ``/<name>``, so
    ``usage()``, ``pids()`` and ``kill()`` work as for our own cgroups."""
    if version == 2:
        unified = next(h for h in v.hierarchies if h.version == 2)
        return Cgroup.wrap(name, {"": unified.own / name})
    by_ctrl = {c: h.own / name for h in v.hierarchies if h.version == 1 for c in h.controllers}
    return Cgroup.wrap(name, {c: by_ctrl[c] for c in cgroups.V1_CONTROLLERS if c in by_ctrl})


# -- leftovers ------------------------------------------------------------------------


def _leftover_names(run_id: str | None) -> dict[str, set[str]]:
    """runtime -> names of isobench containers in its state root (plus "" -> orphan bundles),
    of ``run_id`` if given, and of no run whose owner lives (``runtimes.owners``)."""
    out: dict[str, set[str]] = {}
    live = owners.live()

    def leftover(name: str) -> bool:
        return (of_run(name, run_id) if run_id else name.startswith(f"{PREFIX}-")) and not live.owns(name)

    for rt in RUNTIMES:
        with contextlib.suppress(FileNotFoundError):
            out[rt] = {p.name for p in state_root(rt).iterdir() if leftover(p.name)}
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
        exe = find_runtime(rt)
        v = view.make(hide_cgroup2_on_hybrid=rt == "crun")
        for name in sorted(names[rt]):
            if exe is not None:
                _run_in_view(_runtime_cmd(exe, rt, "delete", "--force", name), v)
            if (state_root(rt) / name).exists():
                shutil.rmtree(state_root(rt) / name, ignore_errors=True)
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
