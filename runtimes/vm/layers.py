"""An image's layers as the guest reads them: one read-only erofs disk per layer, cached.

The image store keeps each layer unpacked once, in overlayfs's own form (whiteouts are 0/0
character devices, opaque directories carry ``trusted.overlay.opaque``).  A guest cannot mount
a host directory without a shared filesystem, so each layer is also packed, once, into an
erofs image (``mkfs.erofs``, Debian's erofs-utils), which keeps exactly those: device nodes,
owners, modes, mtimes, hardlinks and xattrs.  Inside the guest the erofs disks are the
overlay's lowerdirs, as the layer directories are on the host: the same layers, stacked the
same way, never flattened.

The file is named by the layer's diff_id (the digest of its content), the packing's own
version and the layer directory's identity, so it is built once per layer -- shared by every
image that has the layer, and by every guest of those images -- and never rebuilt while the
layer is the same.  It is
uncompressed: the guest's page cache then holds the same bytes a container's does, with no
decompression in the guest's CPU time.  Built into a temporary file, renamed into place.
``sweep_unused`` (``isobench cleanup``) removes the disks of layers the store no longer has.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from runtimes.base import PREFIX, BackendError
from runtimes.image.model import Image
from runtimes.vm.image import vm_cache
from runtimes.vm.image_init import SERIAL_PREFIX
from runtimes.vm.machine import LayerDisk

#: bump when the mkfs options change, so cached disks are rebuilt
FORMAT = "1"
#: --preserve-mtime: the layer's own times, as the overlay on the host shows them
MKFS_OPTIONS = ("--quiet", "--preserve-mtime")
BUILD_TIMEOUT_S = 600
FIX = "apt-get install erofs-utils"


def disks_dir(cache: Path | None = None) -> Path:
    d = vm_cache(cache) / "layers"
    d.mkdir(exist_ok=True)
    os.chmod(d, 0o755)  # libvirt's QEMU runs unprivileged and must read the disks
    return d


def _hex(diff_id: str) -> str:
    algo, _, value = diff_id.partition(":")
    if algo not in ("sha256", "sha512") or not value.isalnum():
        raise BackendError(f"not a layer digest: {diff_id!r}")
    return value


def disk_path(tree: Path, diff_id: str, cache: Path | None = None) -> Path:
    """Where the disk of layer ``tree`` is: named by its diff_id, the packing's options and the
    tree's identity (a layer removed from the store and imported again is a new tree)."""
    st = os.stat(tree)
    key = hashlib.sha256(f"{FORMAT}\0{' '.join(MKFS_OPTIONS)}\0{st.st_dev}:{st.st_ino}:{st.st_mtime_ns}".encode())
    return disks_dir(cache) / f"erofs-{_hex(diff_id)}-{key.hexdigest()[:12]}.img"


def erofs_disk(tree: Path, diff_id: str, cache: Path | None = None) -> Path:
    """The erofs image of the layer ``tree`` (the store's unpacked layer), built unless cached."""
    dest = disk_path(tree, diff_id, cache)
    if dest.exists():
        return dest
    mkfs = shutil.which("mkfs.erofs")
    if mkfs is None:
        raise BackendError(f"an image guest reads its layers as erofs disks: mkfs.erofs not found (fix: {FIX})")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{PREFIX}-", suffix=".img", dir=dest.parent)
    os.close(fd)
    try:
        done = subprocess.run([mkfs, *MKFS_OPTIONS, tmp_name, str(tree)], capture_output=True, text=True,
                              timeout=BUILD_TIMEOUT_S, check=False)
        if done.returncode != 0:
            lines = (done.stderr or done.stdout).strip().splitlines()
            raise BackendError(f"mkfs.erofs failed on layer {diff_id[:19]}: {' | '.join(lines[-3:])}")
        os.chmod(tmp_name, 0o644)
        os.rename(tmp_name, dest)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise BackendError(f"packing layer {diff_id[:19]} for the guest failed: {e}") from e
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
    return dest


def disks(image: Image, cache: Path | None = None) -> tuple[LayerDisk, ...]:
    """One read-only disk per layer of ``image``, bottom first (serial ``isobench-layer-I``)."""
    return tuple(LayerDisk(str(erofs_disk(tree, diff_id, cache)), f"{SERIAL_PREFIX}{i}")
                 for i, (tree, diff_id) in enumerate(zip(image.layers, image.diff_ids, strict=True)))


def sweep(wanted: set[str], cache: Path | None = None) -> list[str]:
    """Remove the disks not named in ``wanted`` (the store's layers' ``disk_path`` names), and
    dead temporaries.  A running guest keeps its open disk (the inode stays until QEMU closes it)."""
    removed = []
    for f in disks_dir(cache).iterdir():
        with contextlib.suppress(FileNotFoundError):
            # a temporary is dead once no build could still be writing it
            dead = (f.name.startswith(f".{PREFIX}-") and time.time() - f.stat().st_mtime > BUILD_TIMEOUT_S) or (
                f.name.startswith("erofs-") and f.name not in wanted)
            if dead:
                f.unlink()
                removed.append(f"guest layer disk {f.name}")
    return removed


def sweep_unused(cache: Path | None = None) -> list[str]:
    """``sweep`` against the image store's layers (``isobench cleanup``); nothing when the store
    cannot be read (a disk is cheap to keep, costly to rebuild)."""
    from runtimes.image.store import Store

    try:
        wanted = {disk_path(tree, d, cache).name for img in Store().list()
                  for tree, d in zip(img.layers, img.diff_ids, strict=True)}
    except (OSError, ValueError):
        return []
    return sweep(wanted, cache)
