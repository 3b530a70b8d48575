"""A guest machine described in neutral terms, for libvirt XML and a QEMU argv alike.

The ``vm`` backend renders a :class:`Machine` to libvirt domain XML
(``runtimes.vm.domain``); a backend that runs QEMU directly renders the same
object to an argv, so both boot the same kernel, initrd, command line, machine
type, devices and accelerator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from runtimes.base import BackendError, LaunchSpec
from runtimes.limits import quota_us

#: the guest kernel's command line.  ``console=ttyS0``: the serial port is the
#: only device, and carries the marker lines; ``quiet``: kernel messages over an
#: emulated UART cost boot time (errors still print); ``panic=-1``: a panicking
#: guest resets at once, which the domain turns into its end (``on_reboot``).
KERNEL_CMDLINE = "console=ttyS0 quiet panic=-1"
DEFAULT_MACHINE_TYPE = "pc"  # i440fx: fewer implicit devices than q35
ACCELS = ("kvm", "tcg")
#: QEMU's virtio-fs daemon (Debian's qemu-system-common; not on PATH)
VIRTIOFSD = "/usr/lib/qemu/virtiofsd"
MIN_MEMORY_MIB = 64  # the initramfs (rootfs ~35 MiB unpacked) must fit with room to spare


@dataclass(frozen=True)
class SerialConsole:
    """The guest's ttyS0, whose output the host reads (libvirt: a pty; QEMU: a chardev)."""

    port: int = 0


@dataclass(frozen=True)
class LayerDisk:
    """One image layer as a read-only virtio disk (``runtimes.vm.layers``); the guest finds it by
    its serial, not by the order the disks were probed in."""

    path: str
    serial: str


@dataclass(frozen=True)
class Nic:
    """virtio-net on an existing tap the host made (``runtimes.netlab.tap``), opened by name:
    the throughput measurement's link to the guest."""

    tap: str


@dataclass(frozen=True)
class ScratchDisk:
    """A writable virtio disk on a raw file, host page cache off (the throughput measurement's
    storage target); the guest finds it by its serial."""

    path: str
    serial: str


@dataclass(frozen=True)
class SharedDir:
    """A host directory the guest mounts read-only over virtio-fs (``runtimes.vm.virtiofs``):
    ``socket`` is the vhost-user socket of the virtiofsd that serves it.  The guest's RAM must
    then be shared memory (``Machine.shared_memory``): virtiofsd reads and writes it directly."""

    socket: str
    tag: str
    source: str
    #: the virtiofsd libvirt runs (QEMU's own, or a wrapper that adds options libvirt cannot)
    binary: str = VIRTIOFSD


#: a benchmark guest's devices: its console, an image guest's layers, what the throughput
#: measurement adds
Device = SerialConsole | LayerDisk | SharedDir | Nic | ScratchDisk


def bench_devices(spec: LaunchSpec) -> tuple[Device, ...]:
    """The devices ``spec.extra`` asks for: ``tap`` (a NIC on it), ``disk`` with ``disk_serial``."""
    out: list[Device] = []
    if spec.extra.get("tap"):
        out.append(Nic(str(spec.extra["tap"])))
    if spec.extra.get("disk"):
        out.append(ScratchDisk(str(spec.extra["disk"]), str(spec.extra.get("disk_serial") or "isobench")))
    return tuple(out)


@dataclass(frozen=True)
class Machine:
    name: str
    accel: str  # "kvm" or "tcg"
    kernel: str
    initrd: str
    cmdline: str = KERNEL_CMDLINE
    vcpus: int = 1
    memory_mib: int = 256
    machine_type: str = DEFAULT_MACHINE_TYPE
    #: total CPUs the whole guest may use (None: unlimited) and the enforcement period
    cpu_quota: float | None = None
    cpu_period_us: int = 100_000
    cpu_shares: int | None = None  # the domain's CPU weight against the host's other work
    #: host CPUs the guest's vCPUs (and QEMU's other threads) run on, as a list ("0,1"); None: any
    cpuset: str | None = None
    #: ACPI lets ``poweroff -f`` in the guest end the machine (without it, it only halts)
    acpi: bool = True
    devices: tuple[Device, ...] = (SerialConsole(),)
    #: the guest's RAM as shared memory (memfd), which virtio-fs needs
    shared_memory: bool = False
    #: (key, value) pairs recorded with the machine (libvirt <metadata>), e.g. run_id
    labels: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    @property
    def cpu_quota_us(self) -> int | None:
        """The quota for the whole guest, per period (as a container's: ``limits.quota_us``)."""
        return quota_us(self.cpu_quota, self.cpu_period_us)

    def label(self, key: str) -> str | None:
        return dict(self.labels).get(key)


def validate(spec: LaunchSpec) -> None:
    """Reject what no guest can boot with, before anything is created (the instance's name is
    checked by ``LaunchSpec`` itself)."""
    if spec.vcpus < 1:
        raise BackendError(f"a guest needs at least 1 vCPU, got {spec.vcpus}")
    if spec.guest_memory_mib < MIN_MEMORY_MIB:
        raise BackendError(f"guest memory must be >= {MIN_MEMORY_MIB} MiB, got {spec.guest_memory_mib}")
    q = spec.limits.cpu_quota
    if q is not None and not (math.isfinite(q) and q > 0):
        raise BackendError(f"cpu quota must be > 0 CPUs (and finite), got {q}")
    if spec.limits.cpu_burst_us is not None:
        raise BackendError("cpu burst: libvirt's <cputune> has no CFS burst setting; guests cannot be asked for it")
    if not 1000 <= spec.limits.cpu_period_us <= 1_000_000:
        raise BackendError(f"cpu period must be 1000..1000000 us, got {spec.limits.cpu_period_us}")


def describe(spec: LaunchSpec, *, accel: str, kernel: str, initrd: str,
             machine_type: str = DEFAULT_MACHINE_TYPE, cmdline: str = KERNEL_CMDLINE,
             extra: tuple[Device, ...] = ()) -> Machine:
    """The machine that runs ``spec``: its vCPUs, memory, CPU limit and labels; ``extra``
    devices after the console (an image's layers, the throughput measurement's NIC and disk)."""
    validate(spec)
    if accel not in ACCELS:
        raise BackendError(f"unknown accelerator {accel!r} (known: {', '.join(ACCELS)})")
    return Machine(
        name=spec.instance,
        accel=accel,
        kernel=kernel,
        initrd=initrd,
        cmdline=cmdline,
        vcpus=spec.vcpus,
        memory_mib=spec.guest_memory_mib,
        machine_type=machine_type,
        cpu_quota=spec.limits.cpu_quota,
        cpu_period_us=spec.limits.cpu_period_us,
        cpu_shares=spec.limits.cpu_shares,
        labels=(("run_id", spec.run_id), ("workload", spec.workload.name)),
        devices=(SerialConsole(), *extra),
        shared_memory=any(isinstance(d, SharedDir) for d in extra),
        cpuset=_cpuset(spec.extra.get("cpuset")),
    )


def _cpuset(value: object) -> str | None:
    """``extra["cpuset"]``: a comma-separated list of host CPU numbers, checked."""
    if value in (None, ""):
        return None
    text = str(value)
    if not all(part.isdigit() for part in text.split(",")):
        raise BackendError(f"cpuset must be a comma-separated list of CPU numbers, got {text!r}")
    return text
