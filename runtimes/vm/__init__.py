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


def cleanup_leftovers(run_id: str | None = None) -> list[str]:
    """Destroy every isobench domain (of ``run_id`` if given); returns their names."""
    from runtimes.vm.leftovers import cleanup_leftovers as impl

    return impl(run_id)


__all__ = ["cleanup_leftovers"]
