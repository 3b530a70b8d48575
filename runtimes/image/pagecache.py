"""How much of an image is in the host's page cache: ``mincore`` over its layer files.

Every instance of an image reads its files through an overlay whose lowerdirs are the image's
layer directories, and overlayfs reads a lower file through the real file's page cache: the
pages belong to the layer's inode, once, whichever instance (or backend) brought them in.
Mapping each regular file of the layers (``MAP_SHARED``, read-only: no page is touched or
read in by this) and asking ``mincore`` counts those pages without disturbing them.  Root
may ask for any file (Linux 5.0+ answers for a file mapping only when the caller could
write the file, or owns it).
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from runtimes import syscalls as sc

PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class Residency:
    """Bytes of the files' pages in the page cache, and of the files in all."""

    resident: int = 0
    total: int = 0
    files: int = 0


def file_resident(path: str | os.PathLike[str]) -> tuple[int, int]:
    """(resident bytes, size) of one regular file; (0, 0) for what cannot be opened or mapped."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NOATIME | os.O_CLOEXEC)
    except OSError:
        return 0, 0
    try:
        size = os.fstat(fd).st_size
        if size == 0:
            return 0, 0
        addr = sc.mmap(size, sc.PROT_READ, sc.MAP_SHARED, fd)
        try:
            vec = sc.mincore(addr, size)
        finally:
            sc.munmap(addr, size)
        return min(sum(b & 1 for b in vec) * PAGE, size), size
    except OSError:
        return 0, 0
    finally:
        os.close(fd)


def resident(layers: Iterable[Path]) -> Residency:
    """The page cache residency of every regular file of ``layers`` (each file counted once)."""
    seen: set[tuple[int, int]] = set()
    res = total = files = 0
    for layer in layers:
        for dirpath, _, names in os.walk(layer):
            for name in names:
                path = os.path.join(dirpath, name)
                with contextlib.suppress(OSError):
                    st = os.lstat(path)
                    if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) in seen:
                        continue
                    seen.add((st.st_dev, st.st_ino))
                    r, size = file_resident(path)
                    res, total, files = res + r, total + size, files + 1
    return Residency(res, total, files)
