"""The ``container`` backend: isobench's own namespace + cgroup runtime.

Per launch: a cgroup below ours (limits applied), then PID 1 of a new PID
namespace (see ``launcher/init.py``), made by the zygote (``launcher/zygote.py``: a small helper
started once, before any t_launch) or, with ``launcher="fork"``, by forking the
harness.  The child joins its cgroup (or is born in it: clone3 CLONE_INTO_CGROUP
on v2), unshares mount, UTS, IPC, network and cgroup namespaces, mounts the
shared rootfs read-only as its root (fresh /proc, minimal /dev, tmpfs /tmp;
``mounts.py``), sets the hostname to the instance name, brings ``lo`` up, cuts
its capabilities to the OCI default set with no_new_privs, and execs the
workload, which stays PID 1.  The ready marker arrives on fd 3 as with ``bare``.

``spec.extra`` knobs: ``argv`` (list: run this instead of the workload),
``stdio="inherit"``, ``cgroup=False`` (no instance cgroup: no limits, no
attach), ``read_only=False`` (writable root: overlay on a tmpfs), ``env``
(dict added to the workload's environment), ``hostname``, ``cwd`` (default
``/tmp``: stress-ng needs a writable working directory), ``die_with_parent``
(default: when the launching thread -- for the zygote, the thread that started
it -- is the main thread; the kernel ties the parent-death signal to a
*thread*), ``launcher`` ("zygote" | "fork"), ``zygote`` ("native" | "python": which zygote
forks PID 1; the native one, ``launcher/zygote.c``, is built on first use and falls back to the
Python one, with the reason recorded in ``metadata()``, where it cannot be built).

Phases (``times.phases``, ns, launch order; they add up to launch→ready):
helper_start (``container:cold`` only: the zygote's start), cgroup_create,
request (config, pipes; the request to the zygote until it forks), clone
(the fork, until the child's fds are in place), cgroup_attach (the child moving
itself into its cgroup; absent when born in it), unshare (the other namespaces),
mounts, net (hostname and lo), security (rlimits, oom_score_adj, session keyring,
capabilities, no_new_privs, signal mask), seccomp (loading the filter), exec
(execve to the ready marker); devices (host side, after cgroup_create: the v1
devices cgroup with its rules, or attaching the v2 BPF program).

Hardening at runc/crun parity (``seccomp=`` option, also per launch in
``spec.extra``: ``default``, ``unconfined`` or a profile path; ``devices=False`` turns the device rules off for comparisons):
see ``security/`` (seccomp, capabilities, process attributes), ``devices/`` and the
mount plan.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from runtimes import cgroups, rootfs, trust
from runtimes.base import Backend, BackendError, Instance, LaunchSpec, Timestamps, now_ns
from runtimes.cgroups import Cgroup, CgroupError
from runtimes.container import image_root, mounts, namespaces
from runtimes.container.devices import rules as devices_mod
from runtimes.container.devices.guard import DeviceGuard
from runtimes.container.launcher import init
from runtimes.container.launcher.zygote import KINDS, Zygote
from runtimes.container.security import caps, hardening
from runtimes.container.security import seccomp as seccomp_mod
from runtimes.image import rundir
from runtimes.process import ChildProcess, ProcessInstance, instance_log, launching
from runtimes.stdio import Stdio
from runtimes.workloads import ISOLATED_ENV, AnyWorkload

#: environment of the workload (plus ``extra["env"]``); nothing of the harness's leaks in
BASE_ENV = ISOLATED_ENV
#: how long the child may take from fork to exec before the launch is declared failed
SETUP_TIMEOUT_S = 30.0
#: how PID 1 is made: by the zygote (default), or by forking the harness (the old way, for A/B)
LAUNCHERS = ("zygote", "fork")
HOST_NAME_MAX = 64


class ContainerInstance(ProcessInstance):
    """One container: PID 1 is our direct child; stop/cleanup as for bare (killpg + cgroup)."""

    _t_exec: int | None = None  # when the child called execve (the "exec" phase starts)
    #: v1: the devices cgroup it joins (v2: a BPF program on ``cgroup``, gone with it); the
    #: backend's shared one, or (``container:cold``) its own, removed with it (``own_devices``)
    devices: devices_mod.DeviceCgroup | None = None
    own_devices: bool = False
    upper: rundir.Upper | None = None  # an image's instance: its own writable layer, removed with it
    own_netns = True

    def start(self, cfg: init.InitConfig, zygote: Zygote | None) -> None:
        """Make PID 1 with the zygote (or by forking the harness when ``zygote`` is None).

        Its stdio are the harness's pipes (``runtimes.stdio``); stdin is replaced by the
        container's own /dev/null once its mounts are done."""
        assert self.stdio is not None
        stdin, out, err = self.stdio.child
        marker_r, marker_w = os.pipe()
        try:
            if zygote is not None:
                child = zygote.spawn(cfg, stdin, out, err, marker_w)
            else:
                child = init.spawn(cfg, stdin, out, err, marker_w)
        except BaseException:
            os.close(marker_r)
            raise
        finally:
            os.close(marker_w)
            self.stdio.spawned()
        self.proc = ChildProcess(child.pid)  # type: ignore[assignment]
        self._read_marker(marker_r)
        spawned = init.read_status(child.status_fd, child.pid, min(SETUP_TIMEOUT_S, self.spec.timeout_s))
        # from the cgroup to the fork: the config and pipes, and for the zygote the request
        assert self.times.t_launch is not None
        self.times.phases["request"] = child.t_fork - self.times.t_launch - sum(self.times.phases.values())
        self._record(child.t_fork, spawned.marks)
        if spawned.error is not None:
            raise BackendError(f"{self.name}: {spawned.error}")

    def _record(self, t_fork: int, marks: dict[str, int]) -> None:
        prev = t_fork
        for step in init.STEPS:
            if step in marks:
                self.times.phases[init.PHASE_OF_STEP[step]] = marks[step] - prev
                prev = marks[step]
        self._t_exec = marks.get("exec")

    def _release(self) -> None:
        try:
            super()._release()
        finally:
            if self.devices is not None and self.own_devices:
                self.devices.remove()
            if self.upper is not None:  # its overlay went with the container's mount namespace
                self.upper.remove()

    def wait_ready(self, timeout: float) -> int:
        t = super().wait_ready(timeout)
        if self._t_exec is not None:
            self.times.phases["exec"] = t - self._t_exec
        return t


class ContainerBackend(Backend):
    name = "container"
    #: the zygote is started inside every launch (after t_launch): the ``container:cold`` variant
    cold = False

    def __init__(self, rootfs_dir: str | None = None, read_only: bool = True, proc_hardening: bool = True,
                 capabilities: tuple[str, ...] = caps.OCI_DEFAULT, launcher: str = "zygote",
                 seccomp: str = seccomp_mod.DEFAULT, devices: bool = True, name: str | None = None,
                 zygote: str = "native"):
        if launcher not in LAUNCHERS:
            raise ValueError(f"launcher must be one of {', '.join(LAUNCHERS)}, got {launcher!r}")
        self._rootfs = Path(rootfs_dir) if rootfs_dir else None
        self.read_only = read_only
        self.proc_hardening = proc_hardening
        self.capabilities = tuple(capabilities)
        if name is not None:  # a variant declared with other defaults (container:unconfined)
            self.name = name
        self.seccomp = seccomp
        self.device_rules = devices_mod.DEFAULT_RULES if devices else None
        self.devices = (DeviceGuard(self.device_rules, self.name, per_instance=self.cold)
                        if self.device_rules is not None else None)
        self.keep_caps = caps.mask(capabilities)
        self._last_cap = caps.last_cap()
        self._plans: dict[tuple[bool, Path, str | None], tuple[mounts.MountOp, ...]] = {}
        self._trees = rootfs.Trees()
        self.launcher = launcher
        #: the zygote of the backend's default kind, and (per-launch ``zygote=``) the other kind's
        self.zygote = Zygote(zygote)
        self._zygotes = {zygote: self.zygote}
        #: what each launch ran ("zygote (native)", "fork", ...) -> how many: the run's metadata
        self.ran: dict[str, int] = {}
        self._runs = rundir.Runs()  # the run directories of image instances' layers

    # -- checks -----------------------------------------------------------
    def available(self) -> str | None:
        if os.geteuid() != 0:
            return "needs root: namespaces, mounts and cgroups (user namespaces are not supported)"
        for kind in namespaces.DEFAULT:
            if not os.path.exists(f"/proc/self/ns/{kind}"):
                return f"the kernel has no {kind} namespaces (/proc/self/ns/{kind} missing)"
        why = trust.untrusted_dir(rootfs.cache_dir())
        if why is not None:  # the zygote and the root file system come from there, run as root
            return f"its cache {rootfs.cache_dir()} is refused: {why} (make it root's alone)"
        try:
            if self._rootfs is None:
                rootfs.inputs()
            if cgroups.version() == 1:
                cgroups.parent_dirs(1)  # raises when a controller is not mounted
        except (rootfs.RootfsError, CgroupError) as e:
            return str(e)
        if self.device_rules is not None and cgroups.version() == 1 and devices_mod.DeviceCgroup.hierarchy() is None:
            return "the cgroup v1 devices controller is not mounted (or pass devices=False)"
        return seccomp_mod.check(self.seccomp)

    def rootfs(self, workload: AnyWorkload | None = None) -> Path:
        """The root given to the backend, else the tree ``workload`` runs in (never written to)."""
        return self._rootfs if self._rootfs is not None else self._trees.get(workload)

    def _rootfs_or_none(self) -> str | None:
        try:
            return str(self.rootfs())
        except rootfs.RootfsError:
            return None

    def plan(self, read_only: bool | None = None, workload: AnyWorkload | None = None,
             volume: str | None = None) -> tuple[mounts.MountOp, ...]:
        """A launch's mount plan (cached): the root writable or not, the tree of ``workload``'s tools, a volume."""
        ro = self.read_only if read_only is None else read_only
        key = (ro, self.rootfs(workload), volume)
        if key not in self._plans:
            self._plans[key] = tuple(mounts.plan(key[1], read_only=ro, proc_hardening=self.proc_hardening,
                                                 volume=volume))
        return self._plans[key]

    # -- launching ----------------------------------------------------------
    def config(self, spec: LaunchSpec, cgroup: Cgroup | None, zygote: Zygote | None = None,
               device_cgroup: devices_mod.DeviceCgroup | None = None,
               reset_signals: tuple[int, ...] | None = None,
               plan: tuple[mounts.MountOp, ...] | None = None) -> init.InitConfig:
        """Everything the child needs, computed before the fork; ``plan``: an image instance's own."""
        process = spec.workload.process  # an image's process (None: a catalog workload)
        argv = spec.extra.get("argv") or (process.argv if process is not None else spec.workload.argv())
        if isinstance(argv, str) or not all(isinstance(a, str) and a for a in argv):
            raise BackendError(f"extra['argv'] must be a non-empty list of non-empty strings, got {argv!r}")
        env = dict(process.env) if process is not None else dict(BASE_ENV)
        env.update(spec.extra.get("env") or {})
        hostname = str(spec.extra.get("hostname") or spec.instance)[:HOST_NAME_MAX]
        env.update({"HOSTNAME": hostname, init.INSTANCE_ENV: spec.instance})
        if spec.extra.get("stdio") == "inherit" and "TERM" in os.environ:
            env.setdefault("TERM", os.environ["TERM"])
        die = spec.extra.get("die_with_parent")
        if die is None:  # the parent-death signal follows the thread that forked (the zygote's parent)
            die = zygote.from_main_thread if zygote is not None else threading.current_thread() is threading.main_thread()
        attach: tuple[str, ...] = ()
        if cgroup is not None:
            attach = tuple(map(str, cgroup.join_files()))  # see init._join_cgroup
        if device_cgroup is not None:  # v1: the devices hierarchy is joined the same way
            attach += (str(device_cgroup.path / "tasks"),)
        return init.InitConfig(
            argv=tuple(argv), env=env, hostname=hostname,
            ns_flags=namespaces.flags(tuple(k for k in namespaces.DEFAULT if k not in ("pid", "cgroup"))),
            cgroupns=cgroup is not None,
            mount_plan=plan or self.plan(spec.extra.get("read_only"), spec.workload, spec.extra.get("volume")),
            keep_caps=self.keep_caps, last_cap=self._last_cap,
            lo_request=namespaces.loopback_up_request(), die_with_parent=bool(die),
            reset_signals=init.default_signals() if reset_signals is None else reset_signals,
            # the root is read-only, and stress-ng refuses to run in a read-only working directory
            cwd=str(spec.extra.get("cwd") or (process.cwd if process is not None else "/tmp")),
            seccomp_bpf=flt.bpf if (flt := self.seccomp_filter(spec.extra.get("seccomp"))) is not None else None,
            rlimits=hardening.rlimit_numbers(), oom_score_adj=hardening.OOM_SCORE_ADJ,
            attach_files=attach,
            cgroup_dir=str(cgroup.dirs[""]) if cgroup is not None and cgroup.version == 2 else None,
            user=(process.uid, process.gid, process.groups) if process is not None else None,
            marker=process is None,
        )

    def seccomp_filter(self, profile: str | None = None) -> seccomp_mod.Filter | None:
        """The compiled profile (``profile``, else the backend's) for this backend's capabilities
        (cached; None: unconfined)."""
        try:
            return seccomp_mod.prepare(profile or self.seccomp, self.capabilities)
        except seccomp_mod.SeccompError as e:
            raise BackendError(str(e)) from e

    def _guard_devices(self, inst: ContainerInstance) -> None:
        """The device rules on the instance (``devices/guard.py``); nothing without rules."""
        if self.devices is None:
            return
        t = now_ns()
        inst.devices, inst.own_devices = self.devices.guard(inst.name, inst.cgroup)
        inst.times.phases["devices"] = now_ns() - t

    def prepare(self) -> None:
        """What every instance shares and no t_launch should pay: the device rules' cgroup or
        program (``launch`` does it too, for callers that skip this)."""
        if self.devices is not None:
            self.devices.prepare()

    def launch(self, spec: LaunchSpec) -> Instance:
        namespaces.loopback_up_request()  # first call imports pyroute2 (~0.5 s): not timed either
        self.seccomp_filter(spec.extra.get("seccomp"))  # resolved and compiled once per profile, before t_launch
        self.prepare()  # the v2 device program, or the v1 devices cgroup every instance joins (once)
        launcher = spec.extra.get("launcher", self.launcher)
        if launcher not in LAUNCHERS:
            raise BackendError(f"launcher must be one of {', '.join(LAUNCHERS)}, got {launcher!r}")
        zygote = self._zygote(spec.extra.get("zygote")) if launcher == "zygote" else None
        plan = (self.plan(spec.extra.get("read_only"), spec.workload, spec.extra.get("volume"))  # not timed
                if spec.workload.image is None else None)
        if plan is None:  # the run's directory of instance layers, once (released at close)
            self._runs.enter(spec.run_id)
        if zygote is not None:
            zygote.resolve()  # the native zygote's build (first launch only): never timed
            if self.cold:
                zygote.close()
            else:
                self._ensure_zygote(plan, zygote)  # warm: a (re)start happens here, before t_launch
        # the harness's signal handlers: not the instance's business, and ~1.5 ms to read
        # (signal.valid_signals builds an enum per signal), so read before t_launch
        reset_signals = init.default_signals()
        what = f"{spec.instance}: cannot start the container"
        # the log before t_launch, as every backend opens its own (runtimes.process.instance_log)
        with instance_log(spec, "container", what) as stdio:
            return self._start(spec, zygote, plan, reset_signals, stdio, what)

    def _start(self, spec: LaunchSpec, zygote: Zygote | None, plan: tuple[mounts.MountOp, ...] | None,
               reset_signals: tuple[int, ...], stdio: Stdio, what: str) -> Instance:
        """From ``t_launch`` on: the instance's cgroup, devices, config and PID 1."""
        times = Timestamps(t_launch=now_ns())
        if zygote is not None and self.cold:
            self._ensure_zygote(plan, zygote)
            times.phases["helper_start"] = times.since_launch()
        cgroup = None
        if spec.extra.get("cgroup", True):
            t0 = now_ns()
            try:
                cgroup = Cgroup.create(spec.instance, spec.limits)
            except CgroupError as e:
                raise BackendError(f"{spec.instance}: {e}") from e
            times.phases["cgroup_create"] = now_ns() - t0
        elif spec.limits.any():
            raise BackendError(f"{spec.instance}: limits {spec.limits.describe()} need a cgroup (extra cgroup=False)")
        inst = ContainerInstance(spec, cgroup, times, stdio)
        with launching(inst, what):
            self._guard_devices(inst)
            if spec.workload.image is not None:  # the instance's own upper, under its image's layers
                inst.upper, plan = image_root.make(spec, times, self.proc_hardening)
            cfg = self.config(spec, cgroup, zygote, inst.devices, reset_signals, plan)
            inst.start(cfg, zygote)
        what_ran = f"zygote ({zygote.kind})" if zygote is not None else "fork"
        self.ran[what_ran] = self.ran.get(what_ran, 0) + 1
        return inst

    def _zygote(self, kind: str | None) -> Zygote:
        """The zygote of ``kind`` (None: the backend's own)."""
        if kind is None:
            return self.zygote
        if kind not in KINDS:
            raise BackendError(f"zygote must be one of {', '.join(KINDS)}, got {kind!r}")
        if kind not in self._zygotes:
            self._zygotes[kind] = Zygote(kind)
        return self._zygotes[kind]

    def _ensure_zygote(self, plan: tuple[mounts.MountOp, ...] | None, zygote: Zygote) -> None:
        """The zygote running, with the shared part of ``plan`` (None: an image's) prepared (template.py)."""
        try:
            zygote.ensure()
            if plan is not None:
                zygote.prepare(plan)
        except OSError as e:
            raise BackendError(f"cannot start the container launcher: {e}") from e

    def helpers(self) -> dict[str, int]:
        """The zygotes that run (a restarted one under its new pid)."""
        return {f"zygote ({kind})": z.pid for kind, z in self._zygotes.items() if z.pid is not None and z.alive()}

    def close(self) -> None:
        for zygote in self._zygotes.values():
            zygote.close()
        self._runs.release()
        if self.devices is not None:
            self.devices.close()

    def metadata(self) -> dict[str, Any]:
        # the zygotes that ran (before any launch: the one that would, built now, before any t_launch)
        zygotes = [z for z in self._zygotes.values() if z.starts] or [self.zygote]
        if self.launcher == "zygote":
            self.zygote.resolve()
        return {
            "namespaces": list(namespaces.DEFAULT),
            "user_namespace": False,
            "pid1": "the workload itself",
            "rootfs": self._rootfs_or_none(),
            "read_only_root": self.read_only,
            "capabilities": caps.names(self.keep_caps),
            "no_new_privs": True,
            "cgroup_version": cgroups.version(),
            "seccomp": flt.describe() if (flt := self._filter_or_none()) is not None else seccomp_mod.UNCONFINED,
            "devices": devices_mod.oci_rules(self.device_rules) if self.device_rules is not None else None,
            "rlimits": hardening.oci_rlimits(), "oom_score_adj": hardening.OOM_SCORE_ADJ,
            "session_keyring": "own",
            # what the launches ran (a scenario's [backend.container] launcher/zygote apply per
            # launch); before any launch, what the backend would run
            "launcher": ", ".join(sorted(self.ran)) or self.launcher,
            "launches": dict(self.ran),
            "zygote": ", ".join(sorted({z.describe() for z in zygotes})),
            "helper": ("none: the harness forks" if self.launcher == "fork" else
                       "zygote started inside every launch (cold)" if self.cold else
                       "zygote started before the first launch (warm)"),
            "cgroup_join": _join_method(),
        }

    def _filter_or_none(self) -> seccomp_mod.Filter | None:
        try:
            return self.seccomp_filter()
        except BackendError:
            return None


def _join_method() -> str:
    """How a container init gets into its cgroup here (recorded with every run)."""
    if cgroups.version() == 2:
        return "born in it: clone3(CLONE_INTO_CGROUP) from the zygote; else it writes 0 to cgroup.procs"
    return "it moves its only thread itself (0 > tasks): no wait for an RCU grace period"

