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
from pathlib import Path
from typing import Any

from runtimes import cgroups, exits, owners, rootfs
from runtimes.base import PREFIX, Backend, BackendError, Instance, LaunchSpec, Timestamps, now_ns
from runtimes.cgroups import CgroupError
from runtimes.container.security import caps as container_caps
from runtimes.container.security import seccomp as container_seccomp
from runtimes.naming import of_run
from runtimes.oci import bundle, mounter, runsc, view
from runtimes.oci.cli import Cli, Crun, find_runtime, runtime_version
from runtimes.oci.instance import OciInstance, delete_container, remove_state
from runtimes.process import instance_log, launching
from runtimes.vm.accel import Verdict
from runtimes.workloads import Workload

RUNTIMES = ("runc", "crun", "runsc")
#: everything the oci backends keep on the host: state roots and bundles
STATE_BASE = Path(os.environ.get("ISOBENCH_OCI_STATE", f"/run/{PREFIX}-oci"))


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
        self._trees = rootfs.Trees()
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
        self._roots = mounter.ImageRoots()  # image instances' roots: mounted in the view (mounter.py)

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
            self._rootfs = self._trees.get()
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
        self._roots.close()  # (before the holder: the image roots it mounted go with its namespace)
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
        _, v, holder = self._prepare()
        root = self._trees.get(spec.workload)  # the tree of the workload's tools (cached per backend)
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
        mounts = self._roots.prepare(holder.pid, spec.run_id) if spec.workload.image is not None else None
        argv = nsenter + cli.run(bundle_dir, spec.instance, marker=mounts is None)
        remount = self._root_flags_tools() if mounts is not None and cli.drops_root_flags else None
        # instance-independent setup before t_launch, as for every backend: the parent
        # directories (once per host), the log, and what the exit events queued meanwhile
        bundles_dir().mkdir(parents=True, exist_ok=True, mode=0o700)
        state_root(self.runtime).mkdir(parents=True, exist_ok=True, mode=0o700)
        if self._exits is not None:
            self._exits.drain()
        what = f"cannot start {self.runtime}"
        with instance_log(spec, self.name.replace(":", "-"), what) as stdio:
            times = Timestamps(t_launch=now_ns())
            upper = mounter.instance_root(mounts, spec, times) if mounts is not None else None
            t0 = now_ns()
            with mounter.released_on_failure(mounts, upper):
                hook = bundle.root_flags_hook(upper.root, *remount) if upper and remount else None
                cfg = bundle.config(spec, upper.root if upper else root, f"/{spec.instance}",
                                    cgroup_version=self._cgroup_version, memsw=self._memsw, seccomp=self._seccomp,
                                    wrap_argv=cli.argv, hooks={"createContainer": [hook]} if hook else None)
                try:
                    bundle.write(bundle_dir, cfg)
                except FileExistsError as e:
                    raise BackendError(f"bundle {bundle_dir} exists: a container of that name is running "
                                       f"or was left behind (isobench cleanup)") from e
            times.phases["bundle"] = now_ns() - t0
            inst = OciInstance(spec, times, self._exits, v, bundle_dir, stdio, cli)
            inst.upper, inst.helper = upper, mounts
            with launching(inst, what):
                inst.spawn(argv)
        # the directories the runtime creates for cgroupsPath /<name>, seen from the host
        inst.cgroup = view.container_cgroup(spec.instance, self._cgroup_version, v)
        return inst

    @staticmethod
    def _root_flags_tools() -> tuple[str, str]:
        """sh and mount(8) for ``bundle.root_flags_hook`` (PATH searches: before ``t_launch``)."""
        sh, mount = find_runtime("sh"), find_runtime("mount")
        if sh is None or mount is None:
            raise BackendError("an image root on crun is remounted nosuid,nodev by sh and mount(8): "
                               "not found (fix: apt-get install dash util-linux)")
        return sh, mount

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
                delete_container(cli, name, v)
            remove_state(cli, name)
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
