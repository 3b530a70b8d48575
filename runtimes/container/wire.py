"""The native zygote's request encoding (``native/zygote.c`` reads it), and the mount-op lowering.

A request is its kind byte (``L`` launch, ``T`` prepare a shared root) and then
records: a 1-byte tag, a u32 length (little-endian) and the payload.  Strings
carry their NUL so the C side uses them in place.  No pickle: the C side
interprets only these records.

Mount operations (``mounts.py``, ``template.Mknod``) are lowered to a handful
of primitives (mount, mkdir, symlink, mknod+chmod, create an empty file, the
pivot_root sequence), each with a condition (always; only when the path exists;
only a directory; only an existing non-directory) so that ``ReadOnly`` (skips a
missing /proc entry) and ``Mask`` (tmpfs on a directory, /dev/null on a file)
are decided at run time, in the container, as their ``execute()`` does.  Every
primitive carries its op's ``describe()`` text: a failure names the plan step.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from runtimes import syscalls as sc
from runtimes.container import init, mounts, template

# primitives and conditions: the same numbers as the enums in native/zygote.c
MOUNT, MKDIR, SYMLINK, MKNOD, CREATE, PIVOT = range(1, 7)
ALWAYS, EXISTS, IS_DIR, EXISTS_NOT_DIR = range(4)
#: what ReadOnly and Mask mount with (as their execute() does)
_RO_FLAGS = sc.MS_RDONLY | sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC


class WireError(ValueError):
    """A mount op (or config) the native zygote cannot express."""


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


def _mount(op: mounts.MountOp, src: str | None, dst: str, fstype: str | None, flags: int, data: str | None = None,
           cond: int = ALWAYS) -> Prim:
    return Prim(MOUNT, op.describe(), dst, src or "", fstype or "", data or "", flags, cond=cond)


def _remount(op: mounts.MountOp, dst: str, flags: int, cond: int = ALWAYS) -> Prim:
    return _mount(op, None, dst, None, sc.MS_REMOUNT | sc.MS_BIND | flags, cond=cond)


def lower(op: mounts.MountOp) -> list[Prim]:
    """The primitives that do what ``op.execute()`` does, in order."""
    d = op.describe()
    if isinstance(op, mounts.MakePrivate):
        return [_mount(op, None, op.path, None, sc.MS_REC | sc.MS_PRIVATE)]
    if isinstance(op, mounts.Bind):
        out = [_mount(op, op.src, op.dst, None, sc.MS_BIND)]
        if op.readonly or op.flags:
            out.append(_remount(op, op.dst, (sc.MS_RDONLY if op.readonly else 0) | op.flags))
        return out
    if isinstance(op, mounts.Remount):
        return [_remount(op, op.dst, op.flags)]
    if isinstance(op, mounts.Overlay):
        scratch = os.path.join(op.lower, "oldroot")
        return [_mount(op, "tmpfs", scratch, "tmpfs", mounts.WRITABLE, f"mode=755,size={mounts.TMPFS_SIZE['upper']}"),
                Prim(MKDIR, d, f"{scratch}/upper", mode=0o755), Prim(MKDIR, d, f"{scratch}/work", mode=0o755),
                _mount(op, "overlay", op.lower, "overlay", mounts.WRITABLE,
                       f"lowerdir={op.lower},upperdir={scratch}/upper,workdir={scratch}/work")]
    if isinstance(op, mounts.Proc):
        return [_mount(op, "proc", op.dst, "proc", sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC)]
    if isinstance(op, mounts.Tmpfs):
        data = f"mode={op.mode:o}" + (f",size={op.size}" if op.size else "")
        return [_mount(op, "tmpfs", op.dst, "tmpfs", op.flags, data)]
    if isinstance(op, mounts.Device):
        return [Prim(CREATE, d, op.dst), _mount(op, op.host, op.dst, None, sc.MS_BIND)]
    if isinstance(op, template.Mknod):
        return [Prim(MKNOD, d, op.dst, mode=op.mode, dev=op.rdev)]
    if isinstance(op, mounts.Dir):
        return [Prim(MKDIR, d, op.dst, mode=op.mode)]
    if isinstance(op, mounts.Symlink):
        return [Prim(SYMLINK, d, op.dst, src=op.target)]
    if isinstance(op, mounts.ReadOnly):  # skipped when the kernel has no such entry
        return [_mount(op, op.dst, op.dst, None, sc.MS_BIND, cond=EXISTS), _remount(op, op.dst, _RO_FLAGS, EXISTS)]
    if isinstance(op, mounts.Mask):  # a directory: an empty read-only tmpfs; a file: /dev/null
        return [_mount(op, "tmpfs", op.dst, "tmpfs", _RO_FLAGS, "size=0", cond=IS_DIR),
                _mount(op, "/dev/null", op.dst, None, sc.MS_BIND, cond=EXISTS_NOT_DIR)]
    if isinstance(op, mounts.PivotRoot):
        return [Prim(PIVOT, d, op.new_root)]
    raise WireError(f"the native zygote cannot run mount step {d!r} ({type(op).__name__})")


# -- encoding ---------------------------------------------------------------------------------
def _rec(tag: bytes, payload: bytes) -> bytes:
    return tag + struct.pack("<I", len(payload)) + payload


def _z(s: str) -> bytes:
    """A NUL-terminated string (an empty one has no NUL: the C side reads it as NULL)."""
    raw = os.fsencode(s)
    if b"\0" in raw:
        raise WireError(f"a string for the native zygote contains a NUL byte: {s!r}")
    return raw + b"\0" if raw else b""


def _field(s: str) -> bytes:
    raw = _z(s)
    return struct.pack("<I", len(raw)) + raw


def encode_prim(p: Prim) -> bytes:
    return (struct.pack("<BBQIQ", p.prim, p.cond, p.flags, p.mode, p.dev)
            + b"".join(_field(s) for s in (p.describe, p.src, p.dst, p.fstype, p.data)))


def encode_ops(tag: bytes, ops: Iterable[mounts.MountOp]) -> bytes:
    return b"".join(_rec(tag, encode_prim(p)) for op in ops for p in lower(op))


def encode_prepare(number: int, split: template.Split) -> bytes:
    """``T``: build the shared half of plan ``number``; containers then run the per-container half."""
    return b"T" + _rec(b"p", struct.pack("<I", number)) + encode_ops(b"S", split.shared) + encode_ops(b"I", split.instance)


def encode_launch(cfg: init.InitConfig, plan: bytes) -> bytes:
    """``L``: everything ``cfg`` says; ``plan`` is ``plan_number()`` or ``encode_ops(b"m", ...)``."""
    out = [b"L", _rec(b"F", struct.pack("<QQIBBBBi", cfg.ns_flags, cfg.keep_caps, cfg.last_cap, cfg.cgroupns,
                                        cfg.die_with_parent, cfg.session_keyring, cfg.oom_score_adj is not None,
                                        cfg.oom_score_adj or 0))]
    out += [_rec(b"a", _z(a)) for a in cfg.argv]
    out += [_rec(b"e", _z(f"{k}={v}")) for k, v in cfg.env.items()]
    out += [_rec(b"h", _z(cfg.hostname)), _rec(b"c", _z(cfg.cwd))]
    out += [_rec(b"t", _z(f)) for f in cfg.attach_files]
    out += [_rec(b"k", struct.pack("<i", s)) for s in cfg.reset_signals]
    out += [_rec(b"r", struct.pack("<iqq", *r)) for r in cfg.rlimits]
    if cfg.cgroup_dir is not None:
        out.append(_rec(b"d", _z(cfg.cgroup_dir)))
    if cfg.lo_request is not None:
        out.append(_rec(b"l", cfg.lo_request))
    if cfg.seccomp_bpf is not None:
        out.append(_rec(b"s", cfg.seccomp_bpf))
    out.append(plan)
    return b"".join(out)


def plan_number(number: int) -> bytes:
    """The launch record that names a prepared plan (its shared root and per-container ops)."""
    return _rec(b"p", struct.pack("<I", number))


def describe(ops: Iterable[mounts.MountOp]) -> str:
    """The lowered plan, one primitive a line (``python -m runtimes.container plan --lowered``)."""
    names = {MOUNT: "mount", MKDIR: "mkdir", SYMLINK: "symlink", MKNOD: "mknod", CREATE: "create", PIVOT: "pivot"}
    conds = {ALWAYS: "", EXISTS: " [if it exists]", IS_DIR: " [if a directory]", EXISTS_NOT_DIR: " [if a file]"}
    return "\n".join(f"{names[p.prim]:<7} {p.src or '-'} {p.dst} {p.fstype or '-'} {p.flags:#x} {p.data or '-'}"
                     f"{conds[p.cond]}" for op in ops for p in lower(op))
