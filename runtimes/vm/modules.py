"""The guest kernel's modules an image guest loads from its initramfs, in load order.

A distro kernel (Debian's 6.1) builds virtio_blk, erofs, overlay, fuse and virtiofs as
modules (``=m``): a guest whose root comes from an image's layers needs them, with what they
depend on, before its init can mount anything.  They are read from the guest kernel's own
``lib/modules/<version>`` (``modules.dep`` for hard dependencies, ``modules.builtin`` for what
that kernel has built in), so they always match the kernel that boots; the guest loads them
with busybox ``insmod`` in the order given here (dependencies first).

Soft dependencies are named explicitly below (``modules.softdep`` names aliases, which only a
full modprobe resolves): ``libcrc32c`` asks the crypto API for crc32c when it loads, and a
guest has no modprobe to answer the kernel's request, so ``crc32c_generic`` is loaded first
(the emulated CPU has no SSE4.2, so the generic code is the one that serves).
"""

from __future__ import annotations

import functools
import lzma
import re
from dataclasses import dataclass
from pathlib import Path

from runtimes.base import BackendError

#: what each way of giving the guest the image's layers needs, in load order (names as modinfo)
VIRTIO = ("virtio", "virtio_ring", "virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio_pci")
#: the throughput measurement's devices: a NIC on a tap, a scratch disk
VIRTIO_NET = (*VIRTIO, "virtio_net")
VIRTIO_BLK = (*VIRTIO, "virtio_blk")
NEEDS = {
    "erofs": (*VIRTIO, "virtio_blk", "crc32c_generic", "libcrc32c", "erofs", "overlay"),
    "virtiofs": (*VIRTIO, "fuse", "virtiofs", "overlay"),
}


@dataclass(frozen=True)
class Module:
    name: str
    path: Path  # the .ko (possibly compressed) in the kernel's module tree


def modules_dir(kernel: str) -> Path:
    """``lib/modules/<version>`` of a ``…/boot/vmlinuz-<version>`` kernel: beside its ``boot``
    directory (an unpacked kernel package), else the host's ``/lib/modules``."""
    p = Path(kernel)
    version = p.name.removeprefix("vmlinuz-")
    if version == p.name:
        raise BackendError(f"cannot tell the version of guest kernel {kernel} (expected a vmlinuz-VERSION file)")
    beside = p.parent.parent / "lib" / "modules" / version
    return beside if p.parent.name == "boot" and beside.is_dir() else Path("/lib/modules") / version


def _canonical(name: str) -> str:
    return name.replace("-", "_")


def _name_of(path: str) -> str:
    return _canonical(re.sub(r"\.ko(\.(xz|zst|gz))?$", "", Path(path).name))


@functools.lru_cache(maxsize=16)
def resolve(kernel: str, wanted: tuple[str, ...]) -> tuple[Module, ...]:
    """The module files ``wanted`` needs on ``kernel``, dependencies first, built-ins left out."""
    root = modules_dir(kernel)
    try:
        dep_text = (root / "modules.dep").read_text()
        builtin = {_name_of(line) for line in (root / "modules.builtin").read_text().split()}
    except OSError as e:
        raise BackendError(f"cannot read the guest kernel's module list in {root}: {e.strerror} "
                           "(an image guest loads virtio_blk, erofs and overlay from there)") from e
    deps: dict[str, tuple[str, list[str]]] = {}
    for line in dep_text.splitlines():
        path, _, rest = line.partition(":")
        deps[_name_of(path)] = (path, rest.split())
    order: list[Module] = []

    def add(name: str) -> None:
        if name in builtin or any(m.name == name for m in order):
            return
        if name not in deps:
            raise BackendError(f"the guest kernel {Path(kernel).name} has no module {name} and does not build it in")
        path, needs = deps[name]
        for dep in reversed(needs):  # modules.dep lists the deepest dependency last
            add(_name_of(dep))
        order.append(Module(name, root / path))

    for name in wanted:
        add(_canonical(name))
    return tuple(order)


def load(module: Module) -> bytes:
    """The module's ELF bytes (busybox insmod takes an uncompressed .ko)."""
    data = module.path.read_bytes()
    if module.path.suffix == ".xz":
        return lzma.decompress(data)
    if module.path.suffix == ".zst":
        import zstandard

        return zstandard.ZstdDecompressor().decompress(data, max_output_size=64 << 20)
    if module.path.suffix == ".gz":
        import gzip

        return gzip.decompress(data)
    return data
