"""Mount primitives: what every mount operation (``mounts.py``) is made of, and running them.

Each ``MountOp`` says what it does once, as a list of primitives (its
``lower()``): mount(src, dst, fstype, flags, data), mkdir, symlink, mknod+chmod,
create an empty file, and the pivot_root sequence, each with a condition
(always; only when the path exists; only on a directory; only on an existing
non-directory) decided at run time, in the container.  Python runs them here
(``run``: the fork launcher, the Python zygote); the native zygote's C child
runs the very same list (``launcher/wire.py`` encodes it, ``launcher/zygote.c``
interprets it): one definition of each op for both.  Every primitive carries
its op's ``describe()`` text, so a failure names the plan step either way.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

from runtimes import syscalls as sc

# the same numbers as the enums in launcher/zygote.c (tests/test_wire.py checks)
MOUNT, MKDIR, SYMLINK, MKNOD, CREATE, PIVOT = range(1, 7)
ALWAYS, EXISTS, IS_DIR, EXISTS_NOT_DIR = range(4)


@dataclass(frozen=True)
class Prim:
    """One primitive; ``src`` is the symlink target for SYMLINK; empty strings mean NULL."""

    prim: int
    describe: str
    dst: str
    src: str = ""
    fstype: str = ""
    data: str = ""
    flags: int = 0
    mode: int = 0
    dev: int = 0
    cond: int = ALWAYS


def mount(describe: str, src: str | None, dst: str, fstype: str | None, flags: int, data: str | None = None,
          cond: int = ALWAYS) -> Prim:
    return Prim(MOUNT, describe, dst, src or "", fstype or "", data or "", flags, cond=cond)


def holds(p: Prim) -> bool:
    """Is ``p``'s condition true now?  (as zygote.c's cond_holds)"""
    if p.cond == ALWAYS:
        return True
    if p.cond == EXISTS:
        return os.path.lexists(p.dst)
    if p.cond == IS_DIR:
        return os.path.isdir(p.dst)
    return os.path.lexists(p.dst) and not os.path.isdir(p.dst)


def run(p: Prim) -> None:
    """Do ``p`` (when its condition holds); OSError on failure."""
    if not holds(p):
        return
    if p.prim == MOUNT:
        sc.mount(p.src or None, p.dst, p.fstype or None, p.flags, p.data or None)
    elif p.prim == MKDIR:
        os.mkdir(p.dst, p.mode)
    elif p.prim == SYMLINK:
        os.symlink(p.src, p.dst)
    elif p.prim == MKNOD:
        os.mknod(p.dst, p.mode, p.dev)
        os.chmod(p.dst, stat.S_IMODE(p.mode))  # the umask must not narrow it
    elif p.prim == CREATE:
        os.close(os.open(p.dst, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o666))
    elif p.prim == PIVOT:
        # pivot_root(".", ".") stacks the old root on top of the new one; the
        # lazy unmount then removes it, so no directory for it is needed.
        os.chdir(p.dst)
        sc.pivot_root(".", ".")
        sc.umount2(".", sc.MNT_DETACH)
        os.chdir("/")
    else:
        raise ValueError(f"unknown mount primitive {p.prim}")


class Lowered:
    """Mixin of the mount operations: ``execute()`` runs ``lower()``'s primitives."""

    def lower(self) -> list[Prim]:
        raise NotImplementedError

    def execute(self) -> None:
        for p in self.lower():
            run(p)
