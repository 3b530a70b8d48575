"""The container's mount plan, as data.

``plan(rootfs)`` returns a list of small operations; each has ``lower()`` (what
it does, as mount primitives: ``prims.py``), ``execute()`` (runs them, inside
the container's fresh mount namespace, before the workload starts; the native
zygote's C child runs the same primitives) and ``describe()`` (one line for
humans: ``python -m runtimes.container plan``).

Everything is mounted in the container's private mount namespace, made
``MS_PRIVATE`` first, so nothing propagates to the host and everything vanishes
with the namespace.  The shared rootfs cache is never written: the root is a
bind mount of it, remounted read-only (or, with ``read_only=False``, an overlay
whose upper layer is a tmpfs that dies with the container).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from runtimes import syscalls as sc
from runtimes.container import prims
from runtimes.container.prims import Lowered, Prim

#: device nodes made in the container's tmpfs /dev, like the host's (type, major:minor, mode)
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
#: /dev symlinks every libc and shell expects
DEV_LINKS = {"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1",
             "stderr": "/proc/self/fd/2"}
#: /proc entries that reach the host kernel: made read-only (runc spec's readonlyPaths)
PROC_READONLY = ("bus", "fs", "irq", "sys", "sysrq-trigger")
#: /proc entries that leak host state: covered (runc spec's maskedPaths; /sys/firmware is
#: not listed because the container has no /sys)
PROC_MASKED = ("acpi", "asound", "kcore", "keys", "latency_stats", "timer_list", "timer_stats",
               "sched_debug", "scsi")
#: size limits of the container's tmpfs mounts (runc's /dev/shm is 64 MiB; /tmp the same; the
#: writable root's upper layer more): pages written there are also charged to its memory cgroup
TMPFS_SIZE = {"dev": "64k", "dev/shm": "65536k", "tmp": "65536k", "upper": "262144k"}
#: every writable mount: no device nodes (bind-mounted devices keep their own mount's flags)
WRITABLE = sc.MS_NOSUID | sc.MS_NODEV
#: /dev once populated: read-only, so a workload (which keeps CAP_MKNOD, as with runc) makes no
#: node there and changes none (chmod); not nodev, because it holds the container's real nodes
DEV_FINAL = sc.MS_RDONLY | sc.MS_NOSUID | sc.MS_NOEXEC
#: what ReadOnly and Mask mount with: nothing of the host's kernel entries is writable or runnable
_COVER = sc.MS_RDONLY | sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC


class MountOp(Protocol):
    def lower(self) -> list[Prim]: ...

    def execute(self) -> None: ...

    def describe(self) -> str: ...


@dataclass(frozen=True)
class MakePrivate(Lowered):
    """Stop mount events from propagating between this namespace and the host's."""

    path: str = "/"

    def lower(self) -> list[Prim]:
        return [prims.mount(self.describe(), None, self.path, None, sc.MS_REC | sc.MS_PRIVATE)]

    def describe(self) -> str:
        return f"make-rprivate {self.path}"


@dataclass(frozen=True)
class Bind(Lowered):
    src: str
    dst: str
    readonly: bool = False
    flags: int = 0  # extra MS_NOSUID/MS_NODEV/MS_NOEXEC applied with the read-only remount

    def lower(self) -> list[Prim]:
        out = [prims.mount(self.describe(), self.src, self.dst, None, sc.MS_BIND)]
        if self.readonly or self.flags:
            out.append(_remount(self.describe(), self.dst, (sc.MS_RDONLY if self.readonly else 0) | self.flags))
        return out

    def describe(self) -> str:
        return f"bind {self.src} -> {self.dst}{' (ro)' if self.readonly else ''}"


def _remount(describe: str, dst: str, flags: int, cond: int = prims.ALWAYS) -> Prim:
    return prims.mount(describe, None, dst, None, sc.MS_REMOUNT | sc.MS_BIND | flags, cond=cond)


@dataclass(frozen=True)
class Remount(Lowered):
    """Change the flags of the bind mount at ``dst`` (not of its filesystem)."""

    dst: str
    flags: int

    def lower(self) -> list[Prim]:
        return [_remount(self.describe(), self.dst, self.flags)]

    def describe(self) -> str:
        return f"remount {self.dst} {_flags(self.flags)}"


@dataclass(frozen=True)
class Overlay(Lowered):
    """A writable root for one container: rootfs below, a tmpfs above (dies with it).

    The tmpfs is mounted on ``<rootfs>/oldroot`` in this namespace only; the
    overlay then covers it, and pivot_root detaches both from view.
    """

    lowerdir: str

    def lower(self) -> list[Prim]:
        d, low = self.describe(), self.lowerdir
        scratch = os.path.join(low, "oldroot")
        return [prims.mount(d, "tmpfs", scratch, "tmpfs", WRITABLE, f"mode=755,size={TMPFS_SIZE['upper']}"),
                *(Prim(prims.MKDIR, d, os.path.join(scratch, sub), mode=0o755) for sub in ("upper", "work")),
                prims.mount(d, "overlay", low, "overlay", WRITABLE,
                            f"lowerdir={low},upperdir={scratch}/upper,workdir={scratch}/work")]

    def describe(self) -> str:
        return f"overlay {self.lowerdir} + tmpfs upper -> {self.lowerdir}"


@dataclass(frozen=True)
class ImageRoot(Lowered):
    """An image's root for one container: the image's layers as lowerdirs (shared by every
    instance, never written) and the instance's own upper (``runtimes.image.rundir.Upper``),
    mounted on ``dst`` in the container's namespace only.  nosuid, nodev: the image's setuid
    bits and device nodes stay without effect."""

    data: str  # lowerdir=<top>:...:<bottom>,upperdir=...,workdir=...
    dst: str

    def lower(self) -> list[Prim]:
        return [prims.mount(self.describe(), "overlay", self.dst, "overlay", WRITABLE, self.data)]

    def describe(self) -> str:
        return f"overlay {self.data} -> {self.dst}"


@dataclass(frozen=True)
class Proc(Lowered):
    dst: str

    def lower(self) -> list[Prim]:
        return [prims.mount(self.describe(), "proc", self.dst, "proc", sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC)]

    def describe(self) -> str:
        return f"proc -> {self.dst}"


@dataclass(frozen=True)
class Tmpfs(Lowered):
    dst: str
    mode: int = 0o755
    flags: int = sc.MS_NOSUID | sc.MS_NODEV
    size: str | None = None

    def lower(self) -> list[Prim]:
        data = f"mode={self.mode:o}" + (f",size={self.size}" if self.size else "")
        return [prims.mount(self.describe(), "tmpfs", self.dst, "tmpfs", self.flags, data)]

    def describe(self) -> str:
        return f"tmpfs -> {self.dst} mode={self.mode:o}{f' size={self.size}' if self.size else ''} {_flags(self.flags)}"


@dataclass(frozen=True)
class Device(Lowered):
    """A device node like the host's ``host`` (type, major:minor, mode), made at ``dst`` in the
    container's /dev tmpfs, as runc does for a container without a user namespace.  Never a
    bind mount of the host's node: through one, a workload's chmod would change the host's."""

    host: str
    dst: str
    mode: int  # S_IFCHR/S_IFBLK | permissions
    rdev: int

    @classmethod
    def like(cls, host: str, dst: str) -> Device:
        st = os.stat(host)
        return cls(host, dst, stat.S_IFMT(st.st_mode) | stat.S_IMODE(st.st_mode), st.st_rdev)

    def lower(self) -> list[Prim]:
        return [Prim(prims.MKNOD, self.describe(), self.dst, mode=self.mode, dev=self.rdev)]  # + chmod

    def describe(self) -> str:
        return f"mknod {self.dst} like {self.host} ({os.major(self.rdev)}:{os.minor(self.rdev)})"


@dataclass(frozen=True)
class Dir(Lowered):
    dst: str
    mode: int = 0o755

    def lower(self) -> list[Prim]:
        return [Prim(prims.MKDIR, self.describe(), self.dst, mode=self.mode)]

    def describe(self) -> str:
        return f"mkdir {self.dst}"


@dataclass(frozen=True)
class Symlink(Lowered):
    target: str
    dst: str

    def lower(self) -> list[Prim]:
        return [Prim(prims.SYMLINK, self.describe(), self.dst, src=self.target)]

    def describe(self) -> str:
        return f"symlink {self.dst} -> {self.target}"


@dataclass(frozen=True)
class ReadOnly(Lowered):
    """Bind ``dst`` onto itself read-only; skipped when the kernel has no such entry (decided at
    run time, in the container)."""

    dst: str

    def lower(self) -> list[Prim]:
        d = self.describe()
        return [prims.mount(d, self.dst, self.dst, None, sc.MS_BIND, cond=prims.EXISTS),
                _remount(d, self.dst, _COVER, cond=prims.EXISTS)]

    def describe(self) -> str:
        return f"read-only {self.dst}"


@dataclass(frozen=True)
class Mask(Lowered):
    """Cover ``dst``: a file with the container's /dev/null (``null``: where its node is at
    that point of the plan), a directory with an empty read-only tmpfs (which one is decided
    at run time, in the container).  The bind inherits the read-only /dev's flags
    (``DEV_FINAL``): nothing done to the cover reaches its node."""

    dst: str
    null: str = "/dev/null"

    def lower(self) -> list[Prim]:
        d = self.describe()
        return [prims.mount(d, "tmpfs", self.dst, "tmpfs", _COVER, "size=0", cond=prims.IS_DIR),
                prims.mount(d, self.null, self.dst, None, sc.MS_BIND, cond=prims.EXISTS_NOT_DIR)]

    def describe(self) -> str:
        return f"mask {self.dst}"


@dataclass(frozen=True)
class PivotRoot(Lowered):
    """Make ``new_root`` the root and detach the old one (the host's tree) entirely."""

    new_root: str

    def lower(self) -> list[Prim]:
        return [Prim(prims.PIVOT, self.describe(), self.new_root)]  # see prims.run

    def describe(self) -> str:
        return f"pivot_root {self.new_root}; umount2(old root, MNT_DETACH)"


def _flags(flags: int) -> str:
    known = ((sc.MS_RDONLY, "ro"), (sc.MS_NOSUID, "nosuid"), (sc.MS_NODEV, "nodev"), (sc.MS_NOEXEC, "noexec"))
    return ",".join(name for bit, name in known if flags & bit) or "-"


#: where a volume (``plan(volume=...)``) appears in the container: the tree's empty /mnt
VOLUME_AT = "/mnt"


def plan(rootfs: str | Path, *, read_only: bool = True, proc_hardening: bool = True,
         volume: str | None = None) -> list[MountOp]:
    """The mount operations that turn ``rootfs`` into the container's root, in order.

    ``volume``: a host directory bind-mounted read-write at ``VOLUME_AT`` (a volume, as an
    engine's ``-v DIR:/mnt``: the throughput measurement's storage target)."""
    root = os.fspath(rootfs)
    if not os.path.isdir(root):
        raise ValueError(f"rootfs {root} is not a directory")
    # pivot_root needs the new root to be a mount point: a bind of the rootfs onto itself.
    ops: list[MountOp] = [MakePrivate("/"), Bind(root, root) if read_only else Overlay(root)]
    ops += _inside(root, proc_hardening, tmp=True)
    if volume is not None:
        if not os.path.isdir(volume):
            raise ValueError(f"volume {volume} is not a directory")
        ops.append(Bind(os.path.realpath(volume), os.path.join(root, VOLUME_AT.lstrip("/")), flags=WRITABLE))
    if read_only:
        # only the root bind turns read-only; /proc, /dev, /tmp are mounts of their own
        ops.append(Remount(root, sc.MS_RDONLY | WRITABLE))
    ops.append(PivotRoot(root))
    return ops


def image_plan(root: str | Path, data: str, *, proc_hardening: bool = True) -> list[MountOp]:
    """The operations that make an image's overlay (``data``: its options) the container's
    root at ``root`` (the instance's empty mountpoint): the same /proc, /dev and /dev/shm as
    ``plan``; no tmpfs on /tmp, as Docker and podman mount none (the root is writable)."""
    dst = os.fspath(root)
    return [MakePrivate("/"), ImageRoot(data, dst), *_inside(dst, proc_hardening, tmp=False), PivotRoot(dst)]


def _inside(root: str, proc_hardening: bool, tmp: bool) -> list[MountOp]:
    """What every container root gets mounted inside it: /proc, /dev, /dev/shm (and /tmp)."""

    def at(rel: str) -> str:
        return os.path.join(root, rel)

    # /dev first, complete and read-only: the masks below bind its /dev/null (the host's /dev
    # is never mounted into a container, not even as a cover)
    ops: list[MountOp] = [Tmpfs(at("dev"), 0o755, sc.MS_NOSUID | sc.MS_NOEXEC, TMPFS_SIZE["dev"])]
    ops += [Device.like(f"/dev/{d}", at(f"dev/{d}")) for d in DEVICES]
    ops += [Symlink(t, at(f"dev/{name}")) for name, t in DEV_LINKS.items()]
    ops.append(Dir(at("dev/shm"), 0o1777))
    ops.append(Remount(at("dev"), DEV_FINAL))
    ops.append(Proc(at("proc")))
    if proc_hardening:
        ops += [ReadOnly(at(f"proc/{p}")) for p in PROC_READONLY]
        ops += [Mask(at(f"proc/{p}"), at("dev/null")) for p in PROC_MASKED]
    ops.append(Tmpfs(at("dev/shm"), 0o1777, WRITABLE | sc.MS_NOEXEC, TMPFS_SIZE["dev/shm"]))
    if tmp:
        ops.append(Tmpfs(at("tmp"), 0o1777, WRITABLE, TMPFS_SIZE["tmp"]))
    return ops


def execute(ops: list[MountOp]) -> None:
    for op in ops:
        try:
            op.execute()
        except OSError as e:
            raise OSError(e.errno, f"mount plan step '{op.describe()}' failed: {e.strerror or e}") from e


def describe(ops: list[MountOp]) -> str:
    return "\n".join(f"{i:2d}. {op.describe()}" for i, op in enumerate(ops, 1))

