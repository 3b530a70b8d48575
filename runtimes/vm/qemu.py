"""The ``qemu`` backend: the ``vm`` backend's guest, started by ``qemu-system-x86_64`` directly.

Same kernel, initramfs, command line, machine type, devices and accelerator as
the libvirt domain: the ``Machine`` comes from ``runtimes.vm.machine.describe``
and is rendered here to the argv libvirt itself would run for it (read off
``/var/log/libvirt/qemu/<domain>.log``), minus what only a manager needs
(the QMP monitor socket, the paused start ``-S`` and resume, ``-uuid``, the
secret object) and with the serial console on QEMU's stdio, a pipe the harness
reads, instead of a pty.  ``-no-reboot`` is ``<on_reboot>destroy``; without
``-no-shutdown`` QEMU ends at the guest's power-off (``<on_poweroff>destroy``).
Unlike libvirt, QEMU runs as root (no ``libvirt-qemu`` user, no namespace).

CPU limits go on a cgroup of our own (``runtimes.cgroups``) that QEMU joins
before it execs, as libvirt's ``<global_quota>`` on the domain cgroup; memory
and pids limits are applied by the guest's kernel to a cgroup inside the guest
(``runtimes.workloads.in_guest_cgroup``, see ``enforcement``).

Timing contract as for ``vm``: ``t_ready`` and ``t_exit`` are the receipt of the
guest's READY and EXIT lines on the console, ``t_clean`` when QEMU is reaped
and its cgroup is gone.  Phases: guest_firmware, guest_kernel, guest_init.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from pathlib import Path
from typing import Any, BinaryIO

import psutil

from runtimes import owners
from runtimes.base import (
    PREFIX,
    BackendError,
    InstanceTimeout,
    LaunchSpec,
    Limits,
    Timestamps,
    now_ns,
)
from runtimes.cgroups import Cgroup, CgroupError, join_self
from runtimes.naming import of_run
from runtimes.process import launching
from runtimes.stdio import close_log, create_log
from runtimes.vm import accel as accelerator
from runtimes.vm import host, virtiofs
from runtimes.vm.guest import GuestBackend, GuestConfig, GuestInstance
from runtimes.vm.guest import guest_report as guest_report  # re-exported: qemu.guest_report(results, accel)
from runtimes.vm.machine import LayerDisk, Machine, Nic, ScratchDisk, SerialConsole, SharedDir
from runtimes.workloads import Workload

#: libvirt's default ``seccomp_sandbox = 1`` (qemu.conf) as it passes it on
SANDBOX = "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"
#: how long cleanup waits for a killed QEMU to be reaped
KILL_TIMEOUT_S = 10.0


def qemu_argv(m: Machine, qemu: str) -> list[str]:
    """The command line libvirt runs for ``domain.render(m)``, without libvirt's management parts."""
    machine_opts = [m.machine_type, "usb=off", "dump-guest-core=off", "memory-backend=pc.ram"]
    if not m.acpi:
        machine_opts.append("acpi=off")
    argv = [
        qemu,
        "-name", f"{m.name},debug-threads=on",
        "-machine", ",".join(machine_opts),
        "-accel", m.accel,
        # libvirt: <cpu mode='host-passthrough'> with KVM, its default model under TCG
        "-cpu", "host,migratable=on" if m.accel == "kvm" else "qemu64",
        "-m", str(m.memory_mib),
        # libvirt's <memoryBacking><source type='memfd'/><access mode='shared'/> for virtio-fs
        "-object", (f"memory-backend-memfd,id=pc.ram,size={m.memory_mib << 20},share=on" if m.shared_memory
                    else f"memory-backend-ram,id=pc.ram,size={m.memory_mib << 20}"),
        "-overcommit", "mem-lock=off",
        "-smp", f"{m.vcpus},sockets={m.vcpus},cores=1,threads=1",
        "-display", "none",
        "-no-user-config",
        "-nodefaults",
        "-rtc", "base=utc",
        "-no-reboot",
        "-boot", "strict=on",
        "-kernel", m.kernel,
        "-initrd", m.initrd,
        "-append", m.cmdline,
    ]
    for i, dev in enumerate(m.devices):
        if isinstance(dev, SerialConsole):
            # stdio can back one chardev only: the benchmark guest has one console
            argv += ["-chardev", f"stdio,id=charserial{dev.port},signal=off",
                     "-device", f"isa-serial,chardev=charserial{dev.port},id=serial{dev.port},index={dev.port}"]
        elif isinstance(dev, LayerDisk):
            # what libvirt passes for a read-only raw <disk> (host page cache on, as its default)
            argv += ["-blockdev", f"driver=file,filename={_escape(dev.path)},node-name=disk{i}-storage,"
                                  "read-only=on,cache.direct=off",
                     "-blockdev", f"driver=raw,node-name=disk{i},file=disk{i}-storage,read-only=on",
                     "-device", f"virtio-blk-pci,drive=disk{i},id=virtio-disk{i},serial={_escape(dev.serial)}"]
        elif isinstance(dev, SharedDir):
            argv += ["-chardev", f"socket,id=chr-vu-fs{i},path={_escape(dev.socket)}",
                     "-device", f"vhost-user-fs-pci,chardev=chr-vu-fs{i},id=fs{i},tag={_escape(dev.tag)}"]
        elif isinstance(dev, Nic):  # libvirt's <interface type='ethernet'> on an existing tap
            argv += ["-netdev", f"tap,id=net{i},ifname={_escape(dev.tap)},script=no,downscript=no",
                     "-device", f"virtio-net-pci,netdev=net{i},id=net{i}dev"]
        elif isinstance(dev, ScratchDisk):  # libvirt's raw <disk> with cache='none' io='native'
            argv += ["-blockdev", f"driver=file,filename={_escape(dev.path)},node-name=disk{i}-storage,"
                                  "cache.direct=on,aio=native",
                     "-blockdev", f"driver=raw,node-name=disk{i},file=disk{i}-storage",
                     "-device", f"virtio-blk-pci,drive=disk{i},id=virtio-disk{i},serial={_escape(dev.serial)}"]
    argv += ["-audiodev", "none,id=audio1", "-sandbox", SANDBOX, "-msg", "timestamp=on"]
    return argv


def _escape(value: str) -> str:
    """A value inside QEMU's key=value option syntax (a comma is written twice)."""
    return value.replace(",", ",,")


class QemuInstance(GuestInstance):
    """One guest: the QEMU process, its console reader, its cgroup."""

    def __init__(self, spec: LaunchSpec, machine: Machine, cgroup: Cgroup, times: Timestamps):
        super().__init__(spec, machine, times)
        self.cgroup = self._cgroup = cgroup  # always one (``cgroup`` is Optional on Instance)
        self.proc: subprocess.Popen[bytes] | None = None
        self.t_spawn: int | None = None
        self._killed = False
        self._inherit = spec.extra.get("stdio") == "inherit"
        self._logs: QemuLogs | None = None  # its logs; the console's written by the reader thread
        #: the virtiofsd sharing an image's layers (``image_root = "virtiofs"``), else None
        self.virtiofsd: virtiofs.Daemon | None = None

    # -- start ------------------------------------------------------------------------
    def start(self, argv: list[str], logs: QemuLogs) -> None:
        """Start QEMU; ``logs`` were opened before ``t_launch`` (the console log is ours from here)."""
        self._logs, self.log_path = logs, logs.console_path  # closed at cleanup (_teardown)
        stderr = logs.file("qemu") or (None if self._inherit else subprocess.DEVNULL)
        procs = [str(p) for p in self._cgroup.procs_files()]
        cpus = {int(c) for c in self.machine.cpuset.split(",")} if self.machine.cpuset else None

        def join_cgroup() -> None:  # between fork and exec: QEMU's threads are born inside
            join_self(procs)
            if cpus is not None:  # libvirt's <vcpu cpuset=…>: every thread of QEMU on those CPUs
                os.sched_setaffinity(0, cpus)

        share = next((d for d in self.machine.devices if isinstance(d, SharedDir)), None)
        if share is not None:  # QEMU connects to its socket at start: it must be listening
            self.virtiofsd = virtiofs.Daemon(share, procs, logs.file("virtiofsd"))
            self.times.phases["virtiofsd_start"] = self.virtiofsd.start()
        self.t_spawn = now_ns()
        # stdin: a pipe nobody writes (EOF on /dev/null would close the stdio chardev)
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr,
                                     preexec_fn=join_cgroup, start_new_session=True)
        self._reader = threading.Thread(target=self._pump, name=f"{self.name}-console", daemon=True)
        self._reader.start()

    # -- console (GuestInstance hooks) --------------------------------------------------
    def _read_console(self) -> bytes:
        assert self.proc is not None and self.proc.stdout is not None
        return os.read(self.proc.stdout.fileno(), 65536)

    def _write_console(self, data: bytes) -> None:
        if (console := self._logs.file("console") if self._logs is not None else None) is not None:
            console.write(data)
            console.flush()
        elif self._inherit:
            os.write(1, data)

    def _send_console(self, data: bytes) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def _boot_start(self) -> int | None:
        return self.t_spawn  # QEMU starts the guest at once: its startup counts as firmware time

    # -- the Instance contract --------------------------------------------------------
    def _ended_without_status(self) -> int:
        assert self.proc is not None
        try:
            self.proc.wait(KILL_TIMEOUT_S)
        except subprocess.TimeoutExpired as e:
            raise InstanceTimeout(f"{self.name}: console closed but QEMU still runs{self._see_log()}") from e
        if self.times.t_exit is None:
            self.times.t_exit = now_ns()
        if self._killed:
            return -signal.SIGKILL
        if self.proc.returncode < 0:  # killed by a signal from elsewhere: status as for a process
            return self.proc.returncode
        raise BackendError(f"{self.name}: the guest ended without reporting an exit status "
                           f"(QEMU exit {self.proc.returncode}){self._see_log()}")

    def processes(self) -> list[int]:
        qemu = [self.proc.pid] if self.proc is not None and self.proc.poll() is None else []
        return qemu + (self.virtiofsd.pids() if self.virtiofsd is not None else [])

    def stop(self) -> None:
        """SIGKILL QEMU (libvirt's destroy does the same after a SIGTERM); an image's app is
        asked to stop first, with its signal and grace."""
        self._stop_app()
        if self.proc is not None and self.proc.poll() is None:
            self._killed = self.marker.exit_status is None
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGKILL)

    def _teardown(self) -> None:
        try:
            try:
                self.stop()
                if self.proc is not None:
                    self.proc.wait(KILL_TIMEOUT_S)
                    if self.times.t_exit is None:
                        self.times.t_exit = self.t_exit_line or now_ns()
            finally:  # also when QEMU outlived its kill: the cgroup sweep kills and removes it
                if self.virtiofsd is not None:
                    self.virtiofsd.stop()
                self._cgroup.remove()
            if self._reader is not None:
                self._reader.join(5.0)
            if self.proc is not None:
                for f in (self.proc.stdin, self.proc.stdout):
                    if f is not None:
                        with contextlib.suppress(OSError):
                            f.close()
        finally:  # QEMU and virtiofsd are gone: their logs are complete
            if self._logs is not None:
                self._logs.close()
                self.log_path = self._logs.console_path

class QemuLogs:
    """The console log, QEMU's stderr log and an image share's virtiofsd log of one instance,
    opened before ``t_launch`` as every backend opens its logs (``runtimes.process.instance_log``).
    The instance closes them at its cleanup, once QEMU and virtiofsd are gone: ``close`` removes
    a log nothing was written to (``console_path`` then None)."""

    def __init__(self, spec: LaunchSpec, virtiofsd: bool = False):
        #: "console", "qemu" (its stderr), "virtiofsd" -> (path, file); only those still open
        self._open: dict[str, tuple[Path, BinaryIO]] = {}
        self.console_path: str | None = None
        if spec.extra.get("stdio") == "inherit" or not spec.log_dir:
            return
        try:
            for kind in ("console", "qemu", *(("virtiofsd",) if virtiofsd else ())):
                path = Path(spec.log_dir) / f"{spec.instance}.{kind}.log"
                self._open[kind] = (path, create_log(path))
        except OSError as e:
            self.close()
            raise BackendError(f"{spec.instance}: cannot start QEMU: {e}") from e
        self.console_path = str(self._open["console"][0])

    def file(self, kind: str) -> BinaryIO | None:
        return self._open[kind][1] if kind in self._open else None

    def close(self) -> None:
        for kind, (path, f) in self._open.items():
            if not close_log(f, path) and kind == "console":
                self.console_path = None
        self._open = {}


class QemuBackend(GuestBackend):
    name = "qemu"

    def __init__(self, *, guest: GuestConfig | None = None):
        super().__init__(guest)

    # -- host checks and preparation (the same files the vm backend boots) ---------------
    def qemu(self) -> str | None:
        return host.qemu_binary()

    def available(self) -> str | None:
        if self.qemu() is None:
            return "qemu-system-x86_64 not found (fix: apt-get install qemu-system-x86)"
        if os.geteuid() != 0:
            return "needs root (a cgroup per guest)"
        if self._kernel_source() is None:
            return self.NO_KERNEL
        return None

    def _probe(self, timeout: float) -> accelerator.ProbeResult:
        import time

        spec = LaunchSpec(workload=Workload("noop"), run_id="accelprobe",
                          instance=f"{PREFIX}-accelprobe-q{os.getpid()}", timeout_s=timeout)
        t0 = time.monotonic()
        try:
            with self._launch(spec, "kvm") as inst:
                inst.wait_ready(timeout)
            return accelerator.ProbeResult(True, time.monotonic() - t0)
        except BackendError as e:
            return accelerator.ProbeResult(False, time.monotonic() - t0, str(e))

    # -- launching -------------------------------------------------------------------
    def _launch(self, spec: LaunchSpec, accel: str) -> QemuInstance:
        qemu = self.qemu()
        if qemu is None:
            raise BackendError("qemu-system-x86_64 not found (fix: apt-get install qemu-system-x86)")
        m = self.machine(spec, accel)  # image lookups: cached files, before t_launch as for vm
        argv = qemu_argv(m, qemu)
        owners.claim(spec.run_id)  # before anything of the run exists: `isobench cleanup` leaves it alone
        logs = QemuLogs(spec, any(isinstance(d, SharedDir) for d in m.devices))  # before t_launch, as for all
        try:
            times = Timestamps(t_launch=now_ns())
            try:
                cgroup = Cgroup.create(spec.instance, Limits(cpu_quota=spec.limits.cpu_quota,
                                                             cpu_period_us=spec.limits.cpu_period_us,
                                                             cpu_weight=spec.limits.cpu_weight))
            except CgroupError as e:
                raise BackendError(f"{spec.instance}: {e}") from e
            times.phases["cgroup_create"] = times.since_launch()
            inst = QemuInstance(spec, m, cgroup, times)
            with launching(inst, f"{spec.instance}: cannot start QEMU"):
                inst.start(argv, logs)  # the instance's from here (closed by its cleanup)
        except BaseException:
            logs.close()
            raise
        return inst

    def metadata(self) -> dict[str, Any]:
        v = self._verdict  # what prepare() found: no probe here
        return {
            **({"accel": v.accel, "accel_reason": v.reason} if v else {}),
            "qemu": host.qemu_version(),
            **self.guest_metadata(),
            "console": "stdio (pipe)",
        }


# -- leftovers ------------------------------------------------------------------------


def _name_arg(cmdline: list[str]) -> str | None:
    """The guest name of a QEMU command line (``-name NAME,...`` or ``-name guest=NAME,...``)."""
    for i, arg in enumerate(cmdline[:-1]):
        if arg == "-name":
            return cmdline[i + 1].split(",", 1)[0]
    return None


def find_leftovers(run_id: str | None = None) -> list[tuple[int, str]]:
    """(pid, name) of QEMU processes we started: ``-name isobench-...`` (libvirt's say ``guest=``)."""
    live = owners.live()
    found = []
    for p in psutil.process_iter(["cmdline"]):
        cmdline = p.info["cmdline"]
        if p.pid == os.getpid() or not cmdline or "qemu" not in os.path.basename(cmdline[0]):
            continue
        name = _name_arg(cmdline)
        if name is None or not (of_run(name, run_id) if run_id else name.startswith(f"{PREFIX}-")):
            continue
        if not live.owns(name):  # a live run's guest is not a leftover
            found.append((p.pid, name))
    return found


def cleanup_leftovers(run_id: str | None = None) -> list[str]:
    """SIGKILL leftover isobench QEMU processes (of ``run_id`` if given); their cgroups are
    removed by ``isobench cleanup``'s cgroup sweep afterwards."""
    removed = []
    for pid, name in find_leftovers(run_id):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
            removed.append(f"qemu {name} (pid {pid})")
    return removed + virtiofs.cleanup_leftovers(run_id)
