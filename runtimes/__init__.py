"""Backends that run a workload: ``bare``, ``unshare`` (a yardstick), ``container``, ``vm``, ``oci:runc``, ``oci:crun``, ``qemu``.

Backends are imported lazily by name so that a host without, say, libvirt can
still run the others; ``get(name)`` returns an instance, ``available()`` says why not.
"""

from __future__ import annotations

import importlib

from runtimes.base import Backend

#: backend name -> "module:factory"; the factory takes the name (so one class can serve oci:*)
REGISTRY: dict[str, str] = {
    "bare": "runtimes.bare:BareBackend",
    "unshare": "runtimes.unshare:UnshareBackend",
    "container": "runtimes.container.backend:ContainerBackend",
    "container:cold": "runtimes.container.backend:ColdContainerBackend",
    "vm": "runtimes.vm.backend:VmBackend",
    "oci:runc": "runtimes.oci:OciBackend",
    "oci:crun": "runtimes.oci:OciBackend",
    "qemu": "runtimes.vm.qemu:QemuBackend",
}


def names() -> list[str]:
    return list(REGISTRY)


def get(name: str, **options: object) -> Backend:
    if name not in REGISTRY:
        raise KeyError(f"unknown backend {name!r} (known: {', '.join(REGISTRY)})")
    module, _, attr = REGISTRY[name].partition(":")
    cls = getattr(importlib.import_module(module), attr)
    backend: Backend = cls(name=name, **options) if name.startswith("oci:") else cls(**options)
    return backend
