"""What the ``vm`` and ``qemu`` instances share: one guest read through its serial console.

Both read the console in a thread of their own, feed it to a ``MarkerChannel``
and take the guest's timestamps from it (READY, the guest's uptime at /init,
EXIT).  How the guest is started, stopped and found gone (a libvirt domain and
its lifecycle events, or a QEMU child process) stays in their own classes.
``GuestBackend`` holds what their backends share: the guest's files.
This module imports no libvirt.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtimes import rootfs
from runtimes.base import Backend, BackendError, Instance, InstanceTimeout, LaunchSpec, Timestamps, now_ns
from runtimes.image.workload import ImageWorkload
from runtimes.marker import MarkerChannel
from runtimes.vm import accel as accelerator
from runtimes.vm import host, image, image_guest, image_init, layers, modules, virtiofs
from runtimes.vm import kernel as guest_kernel
from runtimes.vm.image_app import ImageApp
from runtimes.vm.machine import (
    DEFAULT_MACHINE_TYPE,
    KERNEL_CMDLINE,
    Device,
    Machine,
    Nic,
    ScratchDisk,
    SharedDir,
    bench_devices,
    describe,
    validate,
)
from runtimes.workloads import AnyWorkload, in_guest_cgroup

#: how long ``wait`` lets the console reader deliver the guest's last lines after the guest ended
READER_DRAIN_S = 1.0


def guest_report(results: dict[str, str], accel: str | None) -> dict[str, str]:
    """The guest's own RESULT lines (``guest_*``), plus guest_mem_total / guest_mem_used (MiB)
    and guest_cpu_delivered (CPUs busy over the workload's run, by the guest's clock); for an
    image's guest, guest_app_mem_used and guest_page_cache (MiB, with the app running).

    These derived values are computed here only (the measurements store them as they
    are), at full precision: ``repr`` of the float, which reads back exactly."""
    r = {k: v for k, v in results.items() if k.startswith("guest_")}
    with contextlib.suppress(KeyError, ValueError):
        total = int(r["guest_mem_total_kib"])
        r["guest_mem_total"] = repr(total / 1024)
        r["guest_mem_used"] = repr((total - int(r["guest_mem_available_kib"])) / 1024)
    with contextlib.suppress(KeyError, ValueError):
        wall = float(r["guest_uptime_exit"]) - float(r["guest_uptime_workload"])
        if wall > 0:
            r["guest_cpu_delivered"] = repr(float(r["guest_cpu_busy_s"]) / wall)
    # an image's guest with its app running: the latest answer to a meminfo request, else ready's
    for tag in ("now", "ready"):
        with contextlib.suppress(KeyError, ValueError):
            total = int(r["guest_mem_total_kib"])
            r["guest_app_mem_used"] = repr((total - int(r[f"guest_{tag}_mem_available_kib"])) / 1024)
            r["guest_page_cache"] = repr((int(r[f"guest_{tag}_cached_kib"]) - int(r[f"guest_{tag}_shmem_kib"])) / 1024)
            break
    if accel:
        r["accel"] = accel
    return r


class GuestInstance(Instance):
    """The console-driven half of a guest instance.

    A subclass starts the console reader (``_pump`` in a thread, kept in
    ``_reader``) once the guest can run, and supplies ``_read_console``,
    ``_write_console``, ``_boot_start`` and ``_ended_without_status``.
    """

    #: what reading the console raises once the guest is gone (ends the reader quietly)
    _console_errors: tuple[type[BaseException], ...] = (OSError,)

    def __init__(self, spec: LaunchSpec, machine: Machine, times: Timestamps,
                 marker_log: Callable[[str], None] | None = None):
        self.spec = spec
        self.name = spec.instance
        self.machine = machine
        self.accel = machine.accel
        self.times = times
        self._marker_log = marker_log
        self.marker = MarkerChannel(log=self._console_line)
        self.results = self.marker.results
        self._t_chunk = 0  # receipt of the console chunk being parsed
        self._reader: threading.Thread | None = None
        #: set by the EXIT line, the console's end, or (vm) libvirt's STOPPED event
        self._ended = threading.Event()
        #: an image's app, reached through the console (None: a catalog workload, with its marker)
        self.app = ImageApp(self.name, spec.workload, self._send_console, self._ended, self.results,
                            self._console_errors) if isinstance(spec.workload, ImageWorkload) else None
        self.t_init_line: int | None = None  # receipt of guest_uptime_init
        self.t_exit_line: int | None = None  # receipt of ISOBENCH EXIT

    # -- hooks ------------------------------------------------------------------------
    @abc.abstractmethod
    def _read_console(self) -> bytes:
        """The next console chunk (blocking); b"" at its end."""

    @abc.abstractmethod
    def _write_console(self, data: bytes) -> None:
        """Keep a chunk the marker channel has seen (console log, or the terminal)."""

    def _send_console(self, data: bytes) -> None:
        """Write to the guest's console (its init reads requests such as ``ISOBENCH STOP``)."""
        raise OSError("this guest's console takes no input")

    @abc.abstractmethod
    def _boot_start(self) -> int | None:
        """When the guest started running on the host's clock (the firmware phase begins)."""

    @abc.abstractmethod
    def _ended_without_status(self) -> int:
        """``wait``'s answer when the guest ended with no EXIT line (destroyed, crashed)."""

    # -- console ----------------------------------------------------------------------
    def _pump(self) -> None:
        try:
            while data := self._read_console():
                self._take_console(data)
        except self._console_errors:
            pass  # the console breaks when the guest is destroyed
        finally:
            self.marker.close()
            if self.app is not None:
                self.app.readiness.end()
            self._ended.set()

    def _console_line(self, line: str) -> None:
        if self.app is not None:
            self.app.readiness.line(line, self._t_chunk)
        if self._marker_log is not None:
            self._marker_log(line)

    def _take_console(self, data: bytes) -> None:
        t = self._t_chunk = now_ns()
        had_init = "guest_uptime_init" in self.results
        self.marker.feed(data)  # timestamps READY before anything else happens
        self._write_console(data)
        if not had_init and "guest_uptime_init" in self.results:
            self.t_init_line = t
        if self.marker.exit_status is not None and self.t_exit_line is None:
            self.t_exit_line = t
            self._ended.set()

    def _see_log(self) -> str:
        return f"; console log: {self.log_path}" if self.log_path else ""

    # -- the Instance contract --------------------------------------------------------
    def wait_ready(self, timeout: float) -> int:
        try:
            t = (self.marker.wait_ready(timeout, self.name) if self.app is None
                 else self.app.readiness.wait(timeout))
        except InstanceTimeout as e:
            self.stop()
            raise InstanceTimeout(f"{e}{self._see_log()}") from None
        self.times.t_ready = t
        self._guest_phases()
        return t

    def _guest_phases(self) -> None:
        """Split boot start → ready with the guest's own clock (its uptime when /init ran)."""
        up = self.results.get("guest_uptime_init")
        start = self._boot_start()
        if up is None or self.t_init_line is None or start is None or self.times.t_ready is None:
            return
        up_ns = round(float(up) * 1e9)
        kernel_zero = self.t_init_line - up_ns  # when the guest kernel's clock read 0
        self.times.phases["guest_firmware"] = max(0, kernel_zero - start)
        self.times.phases["guest_kernel"] = up_ns
        self.times.phases["guest_init"] = self.times.t_ready - self.t_init_line

    def wait(self, timeout: float) -> int:
        if not self._ended.wait(timeout):
            self.stop()
            raise InstanceTimeout(f"{self.name}: still running after {timeout:g} s{self._see_log()}")
        if self.marker.exit_status is None and self._reader is not None:
            # libvirt's STOPPED event (another thread) can overtake the console reader that is
            # still handing over the guest's last lines, EXIT included: let it finish them
            self._reader.join(READER_DRAIN_S)
        status = self.marker.exit_status
        if status is not None:
            if self.times.t_exit is None:
                self.times.t_exit = self.t_exit_line
            return status
        return self._ended_without_status()

    def guest_report(self) -> dict[str, str]:
        """The guest's report (``guest_report``); an image's guest is asked for its memory now."""
        if self.app is not None:
            self.app.ask()
        return guest_report(self.results, self.accel)

    def usage(self) -> dict[str, float]:
        return {**super().usage(), **self.guest_usage()}

    def guest_usage(self) -> dict[str, float]:
        """An image's guest: the counters of the cgroup inside it (``ImageApp.usage``)."""
        return self.app.usage() if self.app is not None else {}

    def _stop_app(self) -> None:
        """An image's app: its own stop signal and grace, through the guest (``ImageApp.stop``)."""
        if self.app is not None:
            self.app.stop()


@dataclass(frozen=True)
class GuestConfig:
    """What the guest backends boot, the same for ``vm`` and ``qemu``; None: this host's default."""

    kernel: str | None = None  # a kernel image; None: the newest in /boot, or $ISOBENCH_VM_KERNEL
    kernel_format: str | None = None  # how to boot it; None: $ISOBENCH_VM_KERNEL_FORMAT, else vmlinux
    machine_type: str = DEFAULT_MACHINE_TYPE
    cmdline: str = KERNEL_CMDLINE
    accel: str | None = None  # kvm or tcg, forced; None: the probe's verdict
    probe_timeout_s: float | None = None  # None: $ISOBENCH_KVM_PROBE_TIMEOUT, else the probe's default
    compression: str | None = None  # of the initramfs; None: the best the guest kernel reads
    cache: Path | None = None  # kernel, initramfs and verdict cache; None: the shared one

    @property
    def boot_format(self) -> str:
        return self.kernel_format or os.environ.get("ISOBENCH_VM_KERNEL_FORMAT") or "vmlinux"

    @property
    def probe_timeout(self) -> float:
        return self.probe_timeout_s or float(
            os.environ.get("ISOBENCH_KVM_PROBE_TIMEOUT", accelerator.DEFAULT_PROBE_TIMEOUT_S))


class GuestBackend(Backend):
    """The guest files of the ``vm`` and ``qemu`` backends: the same kernel, base initramfs and
    per-workload initrd from the same cache, so both boot exactly the same guest."""

    NO_KERNEL = "no guest kernel in /boot (fix: apt-get install linux-image-amd64, or set ISOBENCH_VM_KERNEL)"
    #: libvirt starts an image share's virtiofsd from the domain XML (the harness does for QEMU)
    libvirt_starts_virtiofsd = False
    #: probe the accelerator anew instead of reading the cached verdict (the vm backend's option)
    reprobe = False

    def __init__(self, guest: GuestConfig | None = None) -> None:
        self.guest = guest or GuestConfig()
        self._verdict: accelerator.Verdict | None = None
        self._kernel: guest_kernel.BootKernel | None = None
        self._base: Path | None = None  # the base tree's (the manifest names it)
        self._bases: dict[tuple[str, ...], Path] = {}  # the base archive of each workload tree
        self._trees = rootfs.Trees(self.guest.cache)
        self._image_base: Path | None = None  # an image guest's base archive, found once per backend

    def _kernel_source(self) -> str | None:
        return self.guest.kernel or host.find_kernel()

    def boot_kernel(self) -> guest_kernel.BootKernel:
        if self._kernel is None:
            source = self._kernel_source()
            if source is None or not os.path.isfile(source):
                raise BackendError("no guest kernel found (fix: apt-get install linux-image-amd64, "
                                   "or set ISOBENCH_VM_KERNEL)")
            self._kernel = guest_kernel.boot_kernel(source, self.guest.boot_format, image.vm_cache(self.guest.cache))
        return self._kernel

    def base_image(self, workload: AnyWorkload | None = None) -> Path:
        """The base archive of the workload tree ``workload`` runs in (built once per tree)."""
        tools = tuple(sorted(workload.tools)) if workload is not None else ()
        if tools not in self._bases:
            tree = self._trees.get(workload) if tools else None
            self._bases[tools] = image.base_image(self.compression_for(), self.guest.cache, tree)
            if not tools:
                self._base = self._bases[tools]
        return self._bases[tools]

    def image_base(self) -> Path:
        """The base archive of every image guest (busybox, modules, app starter), built or found
        once: a launch never builds it, and a run boots the same one throughout."""
        if self._image_base is None:
            self._image_base = image_init.base_image(self.boot_kernel().source, self.compression_for(),
                                                     self.guest.cache)
        return self._image_base

    def image_files(self, spec: LaunchSpec) -> tuple[Path, ...] | None:
        """An erofs guest reads its image from the layer disks (virtio-fs: the layers themselves)."""
        img = spec.workload.image
        if img is None or image_guest.root_kind(spec) != "erofs":
            return None
        return tuple(layers.disk_path(tree, d, self.guest.cache)
                     for tree, d in zip(img.layers, img.diff_ids, strict=True))

    def share(self, spec: LaunchSpec) -> SharedDir | None:
        """The virtio-fs share of an image's layers when ``spec`` asks for one (``image_root =
        "virtiofs"``), else None.  QEMU's virtiofsd is started by ``qemu``; libvirt starts its own."""
        img = spec.workload.image
        if img is None or image_guest.root_kind(spec) != "virtiofs":
            return None
        share = virtiofs.share_for(img, spec.instance)
        if self.libvirt_starts_virtiofsd:
            share = dataclasses.replace(share, binary=virtiofs.libvirt_binary(image.vm_cache(self.guest.cache)))
        return share

    def compression_for(self) -> str:
        return self.guest.compression or image.choose_compression(host.kernel_config(self.boot_kernel().source))

    def machine(self, spec: LaunchSpec, accel: str) -> Machine:
        """The guest of ``spec``: its initrd (cached per workload) and the neutral machine description."""
        if spec.workload.image is not None:
            initrd, extra = image_guest.files(self.boot_kernel().source, spec, self.image_base(), self.guest.cache,
                                              self.share(spec))
            return describe(spec, accel=accel, kernel=self.boot_kernel().path, initrd=str(initrd),
                            machine_type=self.guest.machine_type, cmdline=self.guest.cmdline, extra=extra)
        argv = spec.extra.get("argv")
        # memory and pids limits are applied by the guest's own kernel, in a cgroup of its own
        run = list(argv) if argv else in_guest_cgroup(spec.workload.argv(), spec.limits.memory_mib, spec.limits.pids)
        devices = bench_devices(spec)
        initrd = image.initrd_for(run, self.base_image(spec.workload), self.guest.cache, applets=bool(argv),
                                  modules=self._modules(devices))
        return describe(spec, accel=accel, kernel=self.boot_kernel().path, initrd=str(initrd),
                        machine_type=self.guest.machine_type, cmdline=self.guest.cmdline, extra=devices)

    def _modules(self, devices: tuple[Device, ...]) -> list[tuple[str, bytes]]:
        """The guest kernel's modules the devices need ((name, .ko bytes), dependencies first)."""
        wanted = [*(modules.VIRTIO_NET if any(isinstance(d, Nic) for d in devices) else ()),
                  *(modules.VIRTIO_BLK if any(isinstance(d, ScratchDisk) for d in devices) else ())]
        if not wanted:
            return []
        return [(m.name, modules.load(m)) for m in modules.resolve(self.boot_kernel().source, tuple(wanted))]

    def verdict(self) -> accelerator.Verdict:
        """KVM or TCG for this host: probed once (``_probe``), then cached on disk under the key
        both guest backends use (QEMU's version, the guest kernel): one probe serves both."""
        if self._verdict is None:
            key = accelerator.cache_key(host.qemu_version() or "?", self.boot_kernel().path)
            self._verdict = accelerator.resolve(
                cache=image.vm_cache(self.guest.cache), key=key, probe=self._probe,
                forced=self.guest.accel, refresh=self.reprobe, timeout_s=self.guest.probe_timeout)
        return self._verdict

    @abc.abstractmethod
    def _probe(self, timeout: float) -> accelerator.ProbeResult:
        """This backend's boot of the noop guest under KVM: does it reach its ready marker in time?"""

    def launch(self, spec: LaunchSpec) -> Instance:
        validate(spec)
        return self._launch(spec, self.verdict().accel)

    @abc.abstractmethod
    def _launch(self, spec: LaunchSpec, accel: str) -> Instance:
        """Boot ``spec``'s guest on accelerator ``accel`` (the probe asks for "kvm" itself)."""

    def prepare(self) -> None:
        """The guest's files (kernel, base initramfs) and the accelerator verdict: a probe boot
        when none is cached.  Explicit, so that ``metadata()`` only reports."""
        self.base_image()
        self.verdict()

    def guest_metadata(self) -> dict[str, Any]:
        """The manifest facts both backends record about the guest they boot (what
        ``prepare()`` found: nothing is built or probed here)."""
        meta: dict[str, Any] = {}
        if self._kernel is not None:
            bk = self._kernel
            meta.update(kernel=bk.source, kernel_boot=bk.format + (f" ({bk.note})" if bk.note else ""))
        meta["machine_type"] = self.guest.machine_type
        if self._base is not None:
            meta["initramfs"] = self._base.name
        if self._image_base is not None:
            meta["image_initramfs"] = self._image_base.name
        return meta
