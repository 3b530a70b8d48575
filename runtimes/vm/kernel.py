"""The guest kernel as it is handed to the hypervisor: the distro bzImage, or its vmlinux.

A distro ``/boot/vmlinuz-*`` is a bzImage whose payload is the real kernel,
compressed (xz on Debian).  Under emulation (TCG) decompressing it before the
kernel's own clock starts costs seconds (measured here: about 5 s of a 13 s
boot).  The payload is an ELF ``vmlinux``; when it carries a PVH entry point
(``CONFIG_PVH``, Xen ELF note 18) QEMU boots it directly, skipping both the
real-mode setup and the decompression, as microVM monitors (Firecracker,
Cloud Hypervisor) do.  That is the same kernel, unpacked once and cached.

``boot_kernel(path, "vmlinux")`` returns the cached vmlinux, or the bzImage
itself with the reason when it cannot be used; ``"bzimage"`` keeps the file.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import lzma
import os
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

from runtimes.base import BackendError

FORMATS = ("vmlinux", "bzimage")
XEN_ELFNOTE_PHYS32_ENTRY = 18
PT_NOTE = 4


@dataclass(frozen=True)
class BootKernel:
    path: str  # what the hypervisor loads
    source: str  # the distro file it came from
    format: str  # "vmlinux" (PVH entry) or "bzimage"
    note: str = ""  # why a vmlinux was not used, when it was asked for


def bzimage_payload(data: bytes) -> bytes:
    """The compressed kernel inside a bzImage (boot protocol >= 2.08 header fields)."""
    if len(data) < 0x250 or data[0x202:0x206] != b"HdrS":
        raise ValueError("not a bzImage (no HdrS boot header)")
    setup_sects = data[0x1F1] or 4
    offset, length = struct.unpack_from("<II", data, 0x248)
    start = (setup_sects + 1) * 512 + offset
    return data[start : start + length]


def decompress(payload: bytes) -> bytes:
    if payload.startswith(b"\xfd7zXZ\x00") or payload.startswith(b"\x5d\x00\x00"):
        return lzma.LZMADecompressor().decompress(payload)
    if payload.startswith(b"\x1f\x8b"):
        return gzip.decompress(payload)
    if payload.startswith(b"\x28\xb5\x2f\xfd"):
        return subprocess.run(["zstd", "-d", "-c", "-q"], input=payload, capture_output=True,
                              check=True).stdout
    raise ValueError(f"unsupported kernel compression (magic {payload[:4].hex()})")


def has_pvh_entry(elf: bytes) -> bool:
    """Whether an ELF64 kernel carries the PVH entry point QEMU's ``-kernel`` needs."""
    if elf[:4] != b"\x7fELF" or elf[4] != 2:
        return False
    phoff, = struct.unpack_from("<Q", elf, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
    for i in range(phnum):
        p_type, _, p_offset, _, _, p_filesz = struct.unpack_from("<IIQQQQ", elf, phoff + i * phentsize)
        if p_type != PT_NOTE:
            continue
        pos, end = p_offset, p_offset + p_filesz
        while pos + 12 <= end:
            namesz, descsz, ntype = struct.unpack_from("<III", elf, pos)
            name = elf[pos + 12 : pos + 12 + namesz].rstrip(b"\0")
            if name == b"Xen" and ntype == XEN_ELFNOTE_PHYS32_ENTRY:
                return True
            pos += 12 + (namesz + 3) // 4 * 4 + (descsz + 3) // 4 * 4
    return False


def boot_kernel(source: str, fmt: str, cache: Path) -> BootKernel:
    if fmt not in FORMATS:
        raise BackendError(f"unknown kernel format {fmt!r} (known: {', '.join(FORMATS)})")
    if fmt == "bzimage":
        return BootKernel(source, source, "bzimage")
    data = Path(source).read_bytes()
    dest = cache / f"vmlinux-{hashlib.sha256(data).hexdigest()[:16]}"
    if dest.exists():
        return BootKernel(str(dest), source, "vmlinux")
    try:
        elf = decompress(bzimage_payload(data))
    except (ValueError, lzma.LZMAError, OSError, subprocess.CalledProcessError) as e:
        return BootKernel(source, source, "bzimage", f"no vmlinux: {e}")
    if not has_pvh_entry(elf):
        return BootKernel(source, source, "bzimage", "no vmlinux: the kernel has no PVH entry (CONFIG_PVH)")
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}")
    try:
        tmp.write_bytes(elf)
        os.chmod(tmp, 0o644)  # QEMU runs unprivileged
        os.rename(tmp, dest)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return BootKernel(str(dest), source, "vmlinux")
