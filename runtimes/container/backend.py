"""The ``container`` backend: isobench's own namespace + cgroup runtime.

Per launch: a cgroup below ours (limits applied), then a fork whose child is
PID 1 of a new PID namespace (see ``init.py``); the child unshares mount, UTS,
IPC and network namespaces, mounts the shared rootfs read-only as its root
(fresh /proc, minimal /dev, tmpfs /tmp; ``mounts.py``), sets the hostname to the
instance name, brings ``lo`` up, joins the cgroup, enters a cgroup namespace,
cuts its capabilities to the OCI default set with no_new_privs, and execs the
workload, which stays PID 1.  The ready marker arrives on fd 3 as with ``bare``.

``spec.extra`` knobs: ``argv`` (list: run this instead of the workload),
``stdio="inherit"``, ``cgroup=False`` (no instance cgroup: no limits, no
attach), ``read_only=False`` (writable root: overlay on a tmpfs), ``env``
(dict added to the workload's environment), ``hostname``, ``cwd`` (default
``/tmp``: stress-ng needs a writable working directory), ``die_with_parent``
(default: when launched from the main thread; the kernel ties the parent-death
signal to the launching *thread*).

Phases (``times.phases``, ns, launch order): cgroup_create, clone (fork into
the new PID namespace), unshare (the other namespaces), mounts, net (hostname
and lo), cgroup_attach (what is left of the host's cgroup join, done in
parallel with the child's setup, + the cgroup namespace), security (rlimits,
oom_score_adj, session keyring, capabilities, no_new_privs, signal reset),
seccomp (loading the filter), exec (execve to the ready marker); on the host side
devices (the v1 devices cgroup with its rules, or attaching the v2 BPF program).

Hardening at runc/crun parity (``seccomp=`` option: ``default``, ``unconfined``
or a profile path; ``devices=False`` turns the device cgroup off for comparisons):
see ``seccomp.py``, ``devices.py``, ``devfilter.py``, ``hardening.py`` and the
mount plan.
"""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path
from typing import Any

from runtimes import cgroups, rootfs
from runtimes.bare import ChildProcess, ProcessInstance, close_log, launching, open_log
from runtimes.base import Backend, BackendError, Instance, LaunchSpec, Timestamps, now_ns
from runtimes.cgroups import Cgroup, CgroupError
from runtimes.container import caps, devfilter, hardening, init, mounts, namespaces
from runtimes.container import devices as devices_mod
from runtimes.container import seccomp as seccomp_mod

#: environment of the workload (plus ``extra["env"]``); nothing of the harness's leaks in
BASE_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root",
            "container": "isobench"}
#: how long the child may take from fork to exec before the launch is declared failed
SETUP_TIMEOUT_S = 30.0
HOST_NAME_MAX = 64


class ContainerInstance(ProcessInstance):
    """One container: PID 1 is our direct child; stop/cleanup as for bare (killpg + cgroup)."""

    _t_exec: int | None = None  # when the child called execve (the "exec" phase starts)
    #: v1: the instance's devices cgroup (v2: a BPF program on ``cgroup``, gone with it)
    devices: devices_mod.DeviceCgroup | None = None

    def start(self, cfg: init.InitConfig, log: Any) -> None:
        devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        marker_r, marker_w = os.pipe()
        try:
            if log is None:  # inherit (isobench exec)
                out, err = 1, 2
            elif log == subprocess.DEVNULL:
                out = err = devnull
            else:
                out = err = log.fileno()
            child = init.spawn(cfg, devnull, out, err, marker_w)
        except BaseException:
            os.close(marker_r)
            raise
        finally:
            os.close(marker_w)
            os.close(devnull)
        self.proc = ChildProcess(child.pid)  # type: ignore[assignment]
        self.marker.read_fd(marker_r)
        attach_error: CgroupError | None = None
        status_fd = child.status_fd
        try:
            try:
                # while the child mounts its root, join it to the cgroup from here (see init.spawn)
                if self.cgroup is not None:
                    self.cgroup.attach(child.pid)
                if self.devices is not None:
                    self.devices.attach(child.pid)
                child.release(True)
            except CgroupError as e:
                attach_error = e
            finally:
                child.release(False)  # a no-op after release(True); else the child aborts
            status_fd = -1  # read_status closes it, whatever happens
            spawned = init.read_status(child.status_fd, child.pid, min(SETUP_TIMEOUT_S, self.spec.timeout_s))
        finally:
            if status_fd >= 0:
                os.close(status_fd)
        self._record(child.t_fork, spawned.marks)
        if attach_error is not None:
            raise BackendError(f"{self.name}: cannot place the container in its cgroup: {attach_error}")
        if spawned.error is not None:
            raise BackendError(f"{self.name}: {spawned.error}")

    def _record(self, t_fork: int, marks: dict[str, int]) -> None:
        prev = t_fork
        for step in init.STEPS:
            if step not in marks:
                break
            self.times.phases[init.PHASE_OF_STEP[step]] = marks[step] - prev
            prev = marks[step]
        self._t_exec = marks.get("exec")

    def _release(self) -> None:
        try:
            super()._release()
        finally:
            if self.devices is not None:
                self.devices.remove()

    def wait_ready(self, timeout: float) -> int:
        t = super().wait_ready(timeout)
        if self._t_exec is not None:
            self.times.phases["exec"] = t - self._t_exec
        return t


class ContainerBackend(Backend):
    name = "container"

    def __init__(self, rootfs_dir: str | None = None, read_only: bool = True, proc_hardening: bool = True,
                 capabilities: tuple[str, ...] = caps.OCI_DEFAULT, seccomp: str = seccomp_mod.DEFAULT,
                 devices: bool = True):
        self._rootfs = Path(rootfs_dir) if rootfs_dir else None
        self.read_only = read_only
        self.proc_hardening = proc_hardening
        self.capabilities = tuple(capabilities)
        self.seccomp = seccomp
        self.device_rules = devices_mod.DEFAULT_RULES if devices else None
        self._devprog: int | None = None  # v2: the loaded device program (once per backend)
        self.keep_caps = caps.mask(capabilities)
        self._last_cap = caps.last_cap()
        self._plans: dict[bool, tuple[mounts.MountOp, ...]] = {}

    # -- checks -----------------------------------------------------------
    def available(self) -> str | None:
        if os.geteuid() != 0:
            return "needs root: namespaces, mounts and cgroups (user namespaces are not supported)"
        for kind in namespaces.DEFAULT:
            if not os.path.exists(f"/proc/self/ns/{kind}"):
                return f"the kernel has no {kind} namespaces (/proc/self/ns/{kind} missing)"
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

    def rootfs(self) -> Path:
        """The container root (built and cached on first use; never written to)."""
        if self._rootfs is None:
            self._rootfs = rootfs.build()
        return self._rootfs

    def _rootfs_or_none(self) -> str | None:
        try:
            return str(self.rootfs())
        except rootfs.RootfsError:
            return None

    def plan(self, read_only: bool | None = None) -> tuple[mounts.MountOp, ...]:
        ro = self.read_only if read_only is None else read_only
        if ro not in self._plans:
            self._plans[ro] = tuple(mounts.plan(self.rootfs(), read_only=ro, proc_hardening=self.proc_hardening))
        return self._plans[ro]

    # -- launching ----------------------------------------------------------
    def config(self, spec: LaunchSpec, cgroup: Cgroup | None) -> init.InitConfig:
        """Everything the child needs; computed before the fork (and before t_launch where possible)."""
        argv = spec.extra.get("argv") or spec.workload.argv()
        if isinstance(argv, str) or not all(isinstance(a, str) and a for a in argv):
            raise BackendError(f"extra['argv'] must be a non-empty list of non-empty strings, got {argv!r}")
        env = dict(BASE_ENV)
        env.update(spec.extra.get("env") or {})
        hostname = str(spec.extra.get("hostname") or spec.instance)[:HOST_NAME_MAX]
        env.update({"HOSTNAME": hostname, init.INSTANCE_ENV: spec.instance})
        if spec.extra.get("stdio") == "inherit" and "TERM" in os.environ:
            env.setdefault("TERM", os.environ["TERM"])
        die = spec.extra.get("die_with_parent")
        if die is None:
            die = threading.current_thread() is threading.main_thread()
        return init.InitConfig(
            argv=tuple(argv), env=env, hostname=hostname,
            ns_flags=namespaces.flags(tuple(k for k in namespaces.DEFAULT if k not in ("pid", "cgroup"))),
            cgroupns=cgroup is not None,
            mount_plan=self.plan(spec.extra.get("read_only")),
            keep_caps=self.keep_caps, last_cap=self._last_cap,
            lo_request=namespaces.loopback_up_request(), die_with_parent=bool(die),
            reset_signals=init.default_signals(),
            # the root is read-only, and stress-ng refuses to run in a read-only working directory
            cwd=str(spec.extra.get("cwd") or "/tmp"),
            seccomp_bpf=flt.bpf if (flt := self.seccomp_filter()) is not None else None,
            rlimits=hardening.rlimit_numbers(), oom_score_adj=hardening.OOM_SCORE_ADJ,
        )

    def seccomp_filter(self) -> seccomp_mod.Filter | None:
        """The compiled profile for this backend's capabilities (cached; None: unconfined)."""
        try:
            return seccomp_mod.prepare(self.seccomp, self.capabilities)
        except seccomp_mod.SeccompError as e:
            raise BackendError(str(e)) from e

    def _device_program(self) -> int:
        if self._devprog is None:
            assert self.device_rules is not None
            try:
                self._devprog = devfilter.load(devfilter.program(self.device_rules))
            except OSError as e:
                raise BackendError(f"cgroup v2 device filter: {e.strerror}") from e
        return self._devprog

    def _guard_devices(self, inst: ContainerInstance) -> None:
        """v1: the devices cgroup (joined with the others in ``start``); v2: the BPF program on
        the instance cgroup.  Without rules, or (v2) without an instance cgroup: nothing."""
        if self.device_rules is None:
            return
        t = now_ns()
        if inst.cgroup is None or inst.cgroup.version == 1:
            if cgroups.version() == 1:
                inst.devices = devices_mod.DeviceCgroup.create(inst.name, self.device_rules)
        else:
            devfilter.attach(inst.cgroup.dirs[""], self._device_program())
        inst.times.phases["devices"] = now_ns() - t

    def close(self) -> None:
        if self._devprog is not None:
            os.close(self._devprog)
            self._devprog = None

    def launch(self, spec: LaunchSpec) -> Instance:
        self.plan(spec.extra.get("read_only"))  # rootfs hash + plan: once per backend, not timed
        namespaces.loopback_up_request()  # first call imports pyroute2 (~0.5 s): not timed either
        self.seccomp_filter()  # resolved and compiled once per backend, before t_launch
        if self.device_rules is not None and cgroups.version() == 2:
            self._device_program()
        times = Timestamps(t_launch=now_ns())
        cgroup = None
        if spec.extra.get("cgroup", True):
            try:
                cgroup = Cgroup.create(spec.instance, spec.limits)
            except CgroupError as e:
                raise BackendError(f"{spec.instance}: {e}") from e
            times.phases["cgroup_create"] = now_ns() - times.t_launch  # type: ignore[operator]
        elif spec.limits.any():
            raise BackendError(f"{spec.instance}: limits {spec.limits.describe()} need a cgroup (extra cgroup=False)")
        inst = ContainerInstance(spec, cgroup, times)
        with launching(inst, f"{spec.instance}: cannot start the container"):
            self._guard_devices(inst)
            cfg = self.config(spec, cgroup)
            log, inst.log_path = open_log(spec, "container")
            try:
                inst.start(cfg, log)
            finally:
                close_log(log)
        return inst

    def metadata(self) -> dict[str, Any]:
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
        }

    def _filter_or_none(self) -> seccomp_mod.Filter | None:
        try:
            return self.seccomp_filter()
        except BackendError:
            return None
