"""The native zygote's request encoding (``zygote.c`` reads it).

A request is its kind byte (``L`` launch, ``T`` prepare a shared root) and then
records: a 1-byte tag, a u32 length (little-endian) and the payload.  Strings
carry their NUL so the C side uses them in place.  No pickle: the C side
interprets only these records.

Mount operations travel as their primitives (``prims.py``: each op's
``lower()``, which Python's ``execute()`` runs too), each with its condition
and its op's ``describe()`` text, so a failure in C names the plan step.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable

from runtimes.container import mounts, prims
from runtimes.container.launcher import init, template
from runtimes.container.prims import Prim


class WireError(ValueError):
    """A mount op (or config) the native zygote cannot express."""


def lower(op: mounts.MountOp) -> list[Prim]:
    """The primitives of ``op`` (its own ``lower()``: one definition for Python and C)."""
    low = getattr(op, "lower", None)
    if not callable(low):
        raise WireError(f"the native zygote cannot run mount step {op.describe()!r} ({type(op).__name__})")
    out: list[Prim] = low()
    return out


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
    return b"T" + plan_number(number) + encode_ops(b"S", split.shared) + encode_ops(b"I", split.instance)


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
    if cfg.user is not None:  # u32 uid, u32 gid, then u32 per supplementary group
        uid, gid, groups = cfg.user
        out.append(_rec(b"u", struct.pack(f"<II{len(groups)}I", uid, gid, *groups)))
    if not cfg.marker:
        out.append(_rec(b"n", b""))
    out.append(plan)
    return b"".join(out)


def plan_number(number: int) -> bytes:
    """The launch record that names a prepared plan (its shared root and per-container ops)."""
    return _rec(b"p", struct.pack("<I", number))


def describe(ops: Iterable[mounts.MountOp]) -> str:
    """The lowered plan, one primitive a line (``python -m runtimes.container plan --lowered``)."""
    names = {prims.MOUNT: "mount", prims.MKDIR: "mkdir", prims.SYMLINK: "symlink", prims.MKNOD: "mknod",
             prims.CREATE: "create", prims.PIVOT: "pivot"}
    conds = {prims.ALWAYS: "", prims.EXISTS: " [if it exists]", prims.IS_DIR: " [if a directory]",
             prims.EXISTS_NOT_DIR: " [if a file]"}
    return "\n".join(f"{names[p.prim]:<7} {p.src or '-'} {p.dst} {p.fstype or '-'} {p.flags:#x} {p.data or '-'}"
                     f"{conds[p.cond]}" for op in ops for p in lower(op))
