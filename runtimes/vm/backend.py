"""The ``vm`` backend: each instance is a transient libvirt domain that boots the workload.

Launch sequence and the phases it records (host ``CLOCK_MONOTONIC``)::

    t_launch
      domain_create   createXML(PAUSED | AUTODESTROY): libvirt sets the domain
                      up and starts QEMU, stopped before the first instruction
      qemu_start      console stream attached, then resume; starting paused
                      means no console byte is lost before we listen
      guest_firmware  resume -> the guest kernel's clock starts (firmware,
                      kernel loading; derived from the guest's own uptime)
      guest_kernel    the guest's uptime when /init starts
      guest_init      /init start -> the READY line is received
    t_ready

``t_exit`` is when the ``ISOBENCH EXIT <rc>`` line is received: the guest's
init has reaped the workload, the moment that matches a host process being
reaped (libvirt's SHUTDOWN event comes later: the guest kernel's power-off and
QEMU's reaction are teardown, counted in exit -> clean).  Without that line (a
destroyed or crashed guest) the guest's end: QEMU's exit by the kernel's event
(``runtimes.exits``; QEMU is libvirtd's child) or libvirt's SHUTDOWN event if
earlier, not its STOPPED event, which follows libvirt's teardown of the domain.
``t_clean`` is when the domain is gone from libvirt and its QEMU has exited.

Every domain is started with ``VIR_DOMAIN_START_AUTODESTROY``: if the harness
dies, even by SIGKILL, libvirtd destroys its guests when the connection drops.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import libvirt
import psutil

from runtimes import owners
from runtimes.base import (
    PREFIX,
    BackendError,
    InstanceTimeout,
    LaunchSpec,
    Timestamps,
    now_ns,
)
from runtimes.exits import ExitEvents
from runtimes.stdio import close_log, create_log
from runtimes.vm import accel as accelerator
from runtimes.vm import domain, host, image, virtiofs
from runtimes.vm.connection import Connection, alive, version_string
from runtimes.vm.guest import GuestBackend, GuestConfig, GuestInstance
from runtimes.vm.machine import Machine
from runtimes.vm.machine_cgroup import cpu_usage, qemu_process
from runtimes.wait import wait_until
from runtimes.workloads import Workload, parse_marker_line

_GONE = (libvirt.VIR_ERR_NO_DOMAIN, libvirt.VIR_ERR_OPERATION_INVALID)
_KERNEL_LINE = re.compile(r"^\[\s*\d+\.\d+\] ")
#: how long cleanup waits for libvirt to report the domain and its QEMU gone
GONE_TIMEOUT_S = 30.0


def _gone(e: libvirt.libvirtError) -> bool:
    return e.get_error_code() in _GONE


class VmInstance(GuestInstance):
    """One guest: its domain, its console reader and the timestamps of its life."""

    _console_errors = (libvirt.libvirtError,)  # the stream breaks when the domain is destroyed

    def __init__(self, backend: VmBackend, spec: LaunchSpec, machine: Machine, log_path: str | None):
        self._inherit = spec.extra.get("stdio") == "inherit"
        super().__init__(spec, machine, Timestamps(), marker_log=self._line)
        self.backend = backend
        self.log_path = log_path
        self._log = create_log(Path(log_path)) if log_path else None  # closed in cleanup()
        self.dom: libvirt.virDomain | None = None
        self.stream: libvirt.virStream | None = None
        self.qemu: psutil.Process | None = None
        self._stopped = threading.Event()
        self.t_resume: int | None = None
        self.t_shutdown: int | None = None  # libvirt: the guest powered off
        self.t_stopped: int | None = None  # libvirt: the domain stopped
        self._destroyed = False

    # -- start ------------------------------------------------------------------------
    def _boot(self, conn: libvirt.virConnect, xml: str, autodestroy: bool) -> None:
        flags = libvirt.VIR_DOMAIN_START_PAUSED
        if autodestroy:
            flags |= libvirt.VIR_DOMAIN_START_AUTODESTROY
        self.times.t_launch = t0 = now_ns()
        try:
            self.dom = conn.createXML(xml, flags)
        except libvirt.libvirtError as e:
            hint = " (a leftover? run: isobench cleanup)" if "already exists" in str(e) else ""
            raise BackendError(f"{self.name}: libvirt could not create the domain: {e}{hint}") from e
        t1 = now_ns()
        self.times.phases["domain_create"] = t1 - t0
        self.stream = conn.newStream(0)  # blocking: recv() in our own thread
        self.dom.openConsole(None, self.stream, 0)
        self._reader = threading.Thread(target=self._pump, name=f"{self.name}-console", daemon=True)
        self._reader.start()
        self.dom.resume()
        self.t_resume = now_ns()
        self.times.phases["qemu_start"] = self.t_resume - t1
        self.qemu = qemu_process(self.name, self.backend.uri)  # once the guest runs: off its clock

    # -- console (GuestInstance hooks) --------------------------------------------------
    def _read_console(self) -> bytes:
        assert self.stream is not None
        data = self.stream.recv(65536)
        return data if isinstance(data, bytes) else b""  # not bytes: -2, would block; ends as EOF does

    def _write_console(self, data: bytes) -> None:
        if self._log is not None:
            self._log.write(data)
            self._log.flush()

    def _send_console(self, data: bytes) -> None:
        assert self.stream is not None
        self.stream.send(data)

    def _boot_start(self) -> int | None:
        return self.t_resume  # the domain was created paused: the guest runs from its resume

    def _line(self, line: str) -> None:
        if not self._inherit:
            return
        line = line.replace("\r", "")
        if parse_marker_line(line) is None and not _KERNEL_LINE.match(line):
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    def _on_event(self, event: int, detail: int) -> None:
        """libvirt lifecycle event (event-loop thread): no libvirt calls from here."""
        t = now_ns()
        if event == libvirt.VIR_DOMAIN_EVENT_SHUTDOWN and self.t_shutdown is None:
            self.t_shutdown = t
        elif event == libvirt.VIR_DOMAIN_EVENT_STOPPED:
            self.t_stopped = t
            self._stopped.set()
            self._ended.set()

    # -- the Instance contract --------------------------------------------------------
    def _guest_end(self) -> int | None:
        """The guest's end without an EXIT line (module doc); the kernel's events are read
        after cleanup (None before), so that reading them is not timed."""
        exits = self.backend._exits
        if exits is not None and self.qemu is not None and self.times.t_launch is not None:
            if not self._cleaned:
                return None
            ends = [t for t in (self.t_shutdown, exits.exit_of(self.qemu.pid, self.times.t_launch)) if t]
            if ends:
                return max(min(ends), self.times.t_ready or 0)  # known no earlier than the ready line
        return self.t_shutdown or self.t_stopped or now_ns()

    def cleanup(self) -> None:
        super().cleanup()
        if self.times.t_exit is None and self.dom is not None:
            self.times.t_exit = self._guest_end()

    def _ended_without_status(self) -> int:
        if self.times.t_exit is None:
            self.times.t_exit = self._guest_end()
        if self._destroyed:
            return -signal.SIGKILL
        raise BackendError(f"{self.name}: the guest ended without reporting an exit status{self._see_log()}")

    def processes(self) -> list[int]:
        """QEMU, and the virtiofsd libvirt started for an image's layers (its memory is the guest's)."""
        if self.qemu is None or not self.qemu.is_running():
            return []
        daemons: list[int] = []
        with contextlib.suppress(libvirt.libvirtError):
            daemons = virtiofs.libvirt_daemons(self.dom.ID()) if self.dom is not None else []
        return [self.qemu.pid, *daemons]

    def _domain(self) -> libvirt.virDomain | None:
        """The domain on a live connection: the one it was created on, or -- after libvirtd was
        restarted, which closes every connection while the guest runs on -- looked up again."""
        if self.dom is not None and not alive(self.dom.connect()):
            self.dom = self.backend._conn.lookup(self.name)
        return self.dom

    def stop(self) -> None:
        if self.dom is None or self._stopped.is_set():
            return
        self._stop_app()  # an image's app: its own stop signal and grace first
        try:
            dom = self._domain()
            if dom is not None:
                dom.destroy()
            self._destroyed = self.marker.exit_status is None
        except (libvirt.libvirtError, BackendError) as e:
            if isinstance(e, libvirt.libvirtError) and _gone(e):
                return
            if self.qemu is None or not self.qemu.is_running():
                raise BackendError(f"{self.name}: cannot destroy the domain: {e}") from e
            # libvirtd does not answer (restarting): end the guest's QEMU itself; the daemon,
            # back, finds it gone and drops the domain
            with contextlib.suppress(psutil.Error):
                self.qemu.kill()
            self._destroyed = self.marker.exit_status is None

    def _teardown(self) -> None:
        try:
            try:
                self.stop()
            finally:
                self._wait_gone()
                if self.times.t_exit is None and self.dom is not None:
                    self.times.t_exit = self.t_exit_line or self._guest_end()
                self._close_console()
        finally:
            self.backend._forget(self)

    def _wait_gone(self, timeout: float = GONE_TIMEOUT_S) -> None:
        """Until libvirt no longer knows the domain and its QEMU has exited."""
        if self.dom is None:
            return

        def gone() -> bool:
            try:
                dom = self._domain()
                active = dom is not None and bool(dom.isActive())
            except libvirt.libvirtError as e:
                if not _gone(e):
                    raise
                active = False
            except BackendError:  # libvirtd away: its QEMU is what is left to see
                active = False
            return not active and not self.processes()

        if not wait_until(gone, timeout, interval=0.002):
            raise BackendError(f"{self.name}: domain or QEMU still there {timeout:g} s after destroy")

    def _close_console(self) -> None:
        if self._reader is not None:
            self._reader.join(5.0)
        if self.stream is not None:
            with contextlib.suppress(libvirt.libvirtError):
                self.stream.abort()
            self.stream = None
        if self._log is not None and self.log_path is not None:
            if not close_log(self._log, self.log_path):
                self.log_path = None  # nothing was written: no log
            self._log = None

    def usage(self) -> dict[str, float]:
        """CPU counters of the domain's cgroup (where libvirt applies <cputune>); an image's guest
        adds its own cgroup's (``guest_usage``)."""
        if self.qemu is None:
            return {}
        try:
            return {**cpu_usage(self.qemu.pid), **self.guest_usage()}
        except (OSError, psutil.Error):
            return {}


class VmBackend(GuestBackend):
    """Guests through libvirt; one connection (and event callback) per backend."""

    name = "vm"
    libvirt_starts_virtiofsd = True

    def __init__(self, uri: str | None = None, *, guest: GuestConfig | None = None, reprobe: bool = False):
        super().__init__(guest)
        self.uri = uri or host.uri()
        self.reprobe = reprobe or os.environ.get("ISOBENCH_ACCEL_REPROBE", "") not in ("", "0")
        self._conn = Connection(self.uri, self._on_lifecycle)  # opened on first use, again after a restart
        self._live: dict[str, VmInstance] = {}
        self._lock = threading.RLock()
        self._exits: ExitEvents | None = None  # QEMU's end when a guest is destroyed (None: unavailable)
        self._exits_tried = False

    # -- host checks and preparation -------------------------------------------------
    def available(self) -> str | None:
        problem = host.libvirt_status(self.uri)
        if problem is not None:
            return problem
        if self._kernel_source() is None:
            return self.NO_KERNEL
        return None

    def _connection(self) -> libvirt.virConnect:
        return self._conn.get()  # closed by close(), which the backend's owner calls

    def _on_lifecycle(self, _conn: Any, dom: libvirt.virDomain, event: int, detail: int, _opaque: Any) -> None:
        inst = self._live.get(dom.name())
        if inst is not None:
            inst._on_event(event, detail)

    def _forget(self, inst: VmInstance) -> None:
        with self._lock:
            if self._live.get(inst.name) is inst:
                del self._live[inst.name]

    # -- accelerator -----------------------------------------------------------------
    def _probe(self, timeout: float) -> accelerator.ProbeResult:
        """Boot the noop guest under KVM: does it reach its ready marker in time?"""
        logs = image.vm_cache(self.guest.cache)
        spec = LaunchSpec(workload=Workload("noop"), run_id="accelprobe",
                          instance=f"{PREFIX}-accelprobe-{os.getpid()}", timeout_s=timeout, log_dir=str(logs))
        t0 = time.monotonic()
        try:
            with self._launch(spec, "kvm") as inst:
                inst.wait_ready(timeout)
            return accelerator.ProbeResult(True, time.monotonic() - t0)
        except InstanceTimeout:
            return accelerator.ProbeResult(False, time.monotonic() - t0, f"no ready marker within {timeout:g} s")
        except BackendError as e:
            return accelerator.ProbeResult(False, time.monotonic() - t0, str(e).split("; console log")[0])
        finally:
            with contextlib.suppress(OSError):
                os.replace(logs / f"{spec.instance}.console.log", logs / "accel-probe.console.log")

    # -- launching -------------------------------------------------------------------
    def _launch(self, spec: LaunchSpec, accel_name: str) -> VmInstance:
        m = self.machine(spec, accel_name)
        xml = domain.render(m)
        log_path = str(Path(spec.log_dir) / f"{spec.instance}.console.log") if spec.log_dir else None
        owners.claim(spec.run_id)  # before anything of the run exists: `isobench cleanup` leaves it alone
        conn = self._connection()
        if not self._exits_tried:  # once per backend, before any t_launch; closed by close()
            self._exits_tried = True
            with contextlib.suppress(OSError):
                self._exits = ExitEvents()
        if self._exits is not None:
            self._exits.drain()  # what queued since the last launch: outside the window
        with self._lock:
            if spec.instance in self._live:
                raise BackendError(f"{spec.instance}: an instance of that name is already running")
            inst = VmInstance(self, spec, m, log_path)
            self._live[spec.instance] = inst
        try:
            inst._boot(conn, xml, autodestroy=bool(spec.extra.get("autodestroy", True)))
        except BaseException:
            inst.cleanup()
            raise
        return inst

    def metadata(self) -> dict[str, Any]:
        v = self._verdict  # what prepare() found: no probe here
        conn = self._connection()
        return {
            **({"accel": v.accel, "accel_reason": v.reason, "accel_probe_s": v.probe_s} if v else {}),
            "libvirt": version_string(conn.getLibVersion()),
            "qemu": version_string(conn.getVersion()),
            **self.guest_metadata(),
            "uri": self.uri,
        }

    def close(self) -> None:
        """Clean up every instance still running, then drop the connection."""
        with self._lock:
            live = list(self._live.values())
        for inst in live:
            with contextlib.suppress(Exception):
                inst.cleanup()
        if self._exits is not None:
            self._exits.close()
        self._exits, self._exits_tried = None, False
        self._conn.close()


def accel_verdict(refresh: bool = False) -> accelerator.Verdict:
    """The verdict the ``vm`` backend uses on this host, probing when none is cached (doctor)."""
    backend = VmBackend(reprobe=refresh)
    try:
        return backend.verdict()
    finally:
        backend.close()
