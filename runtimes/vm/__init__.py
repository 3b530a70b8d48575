"""The ``vm`` backend: the workload in a libvirt guest booted straight into an initramfs.

``image`` builds the guest's initramfs from the workload rootfs, ``machine``
describes the guest in neutral terms (libvirt XML in ``domain``, a QEMU argv
elsewhere), ``accel`` decides between KVM and TCG, ``host`` sets libvirt up,
``guest`` holds what both guest backends share, ``backend`` runs instances through
libvirt and ``qemu`` (the ``qemu`` backend) the same guest on QEMU directly;
``machine_cgroup`` reads libvirt's cgroup of a domain.  Importing this package
does not import libvirt.
"""

from __future__ import annotations

import os

from runtimes.declaration import Declaration, Option

#: how a guest enforces limits: its own kernel applies them to a cgroup inside the guest that
#: holds the workload (``runtimes.workloads.in_guest_cgroup``); the guest is judged on that
_GUEST_MEMORY = "memory.max of a cgroup inside the guest (its own kernel enforces it)"
_GUEST_PIDS = "pids.max of a cgroup inside the guest (its own kernel enforces it)"


#: the emulator both guest backends run, recorded in the manifest's host facts
_TOOLS = {"qemu": ("qemu-system-x86_64", "--version")}
#: an image's guest reads each layer as an erofs disk (mkfs.erofs); the project's own list has the rest
_PACKAGES = {"erofs-utils": "/usr/bin/mkfs.erofs"}


def _guest_options(image_root: str = "erofs") -> tuple[Option, ...]:
    return (Option("vcpus", int, 1, 1, 1 << 20, "virtual CPUs of the guest", spec_field="vcpus"),
            Option("memory_mib", int, 256, 32, 1 << 20, "the guest's RAM (its memory limit), MiB",
                   spec_field="guest_memory_mib"),
            Option("image_root", str, image_root, help="how an image's guest reads its layers: erofs (a read-only "
                   "disk per layer) or virtiofs (the store's layers shared by virtiofsd)",
                   choices=("erofs", "virtiofs")))


DECLARATION = Declaration(
    name="vm",
    factory="runtimes.vm.backend:VmBackend",
    label="a libvirt guest, direct kernel boot into an initramfs of the same rootfs",
    colour="#D55E00",
    options=_guest_options(),
    guest=True,
    packages=_PACKAGES,
    floor_compared=True,
    enforcement={"cpu": "libvirt <cputune> global quota on the domain's cpu cgroup",
                 "memory": _GUEST_MEMORY, "pids": _GUEST_PIDS},
    sweep="runtimes.vm:cleanup_leftovers",
    doctor="runtimes.vm.checks:checks",
    host_setup="runtimes.vm.host:setup",
    tools=_TOOLS,
)
QEMU = Declaration(
    name="qemu",
    factory="runtimes.vm.qemu:QemuBackend",
    label="the same guest, QEMU started directly (no libvirt)",
    colour="#E69F00",
    options=_guest_options(),
    guest=True,
    packages=_PACKAGES,
    peer_of="vm",
    enforcement={"cpu": "cgroup cpu quota on the QEMU process (as libvirt's global quota)",
                 "memory": _GUEST_MEMORY, "pids": _GUEST_PIDS},
    sweep="runtimes.vm.qemu:cleanup_leftovers",
    doctor="runtimes.vm.checks:checks",
    tools=_TOOLS,
)

#: the qemu guest with an image's layers over virtio-fs: the A/B of how a guest reads an image
#: (scenarios/image-guests.toml), in one interleaved run; a catalog workload runs as on qemu
QEMU_VIRTIOFS = Declaration(
    name="qemu:virtiofs",
    factory="runtimes.vm.qemu:QemuBackend",
    label="the qemu guest, an image's layers shared by virtiofsd instead of erofs disks",
    colour="#F0E442",
    options=_guest_options("virtiofs"),
    guest=True,
    packages=_PACKAGES,
    enforcement=QEMU.enforcement,
    sweep="runtimes.vm.qemu:cleanup_leftovers",
    doctor="runtimes.vm.checks:checks",
    tools=_TOOLS,
)


def cleanup_leftovers(run_id: str | None = None) -> list[str]:
    """Destroy every isobench domain (of ``run_id`` if given); returns their names.  Without a
    run id, also the guests' layer disks of layers the image store no longer has."""
    from runtimes.vm.leftovers import cleanup_leftovers as impl

    removed = impl(run_id)
    if run_id is None and os.geteuid() == 0:
        from runtimes.vm import layers

        removed += layers.sweep_unused()
    return removed


__all__ = ["DECLARATION", "QEMU", "QEMU_VIRTIOFS", "cleanup_leftovers"]
