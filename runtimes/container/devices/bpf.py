"""cgroup v2 device rules: a BPF_PROG_TYPE_CGROUP_DEVICE program, as runc builds it.

cgroup v2 has no ``devices`` controller; the kernel asks a BPF program attached
to the cgroup (and to its ancestors) instead.  ``program(rules)`` emits the same
instruction sequence as runc's ``libcontainer/cgroups/devices/devicefilter``:
a prologue that splits ``struct bpf_cgroup_dev_ctx`` into type (R2), access
(R3), major (R4) and minor (R5), then one block per rule (last rule first: the
last matching rule wins) that jumps to the next block on a mismatch, or returns
the rule's verdict; nothing matched -> 0 (deny).

``load`` hands the program to the kernel once (per backend); ``attach`` hangs it
on an instance's cgroup directory with BPF_F_ALLOW_MULTI, so a delegating
parent's own program (systemd's) still applies.  The attachment goes with the
cgroup when it is removed.  On a hybrid v1 host the unified hierarchy takes
programs too, which is how the tests exercise it here.
"""

from __future__ import annotations

import ctypes
import os
import platform
import struct

from runtimes.container.devices.rules import WILDCARD, Rule

# <linux/bpf.h>
BPF_PROG_LOAD = 5
BPF_PROG_ATTACH = 8
BPF_PROG_QUERY = 16
BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_CGROUP_DEVICE = 6
BPF_F_ALLOW_MULTI = 2
BPF_DEVCG_DEV_BLOCK, BPF_DEVCG_DEV_CHAR = 1, 2
BPF_DEVCG_ACC_MKNOD, BPF_DEVCG_ACC_READ, BPF_DEVCG_ACC_WRITE = 1, 2, 4

_SYS_BPF = {"x86_64": 321, "aarch64": 280, "riscv64": 280, "ppc64le": 361, "s390x": 351}
_ATTR_SIZE = 128  # a zeroed union bpf_attr large enough for the commands used here

# opcodes: class | op | source
_LDXW = 0x61  # BPF_LDX | BPF_MEM | BPF_W
_AND32_K, _AND32_X, _RSH32_K = 0x54, 0x5C, 0x74  # BPF_ALU | op | K/X
_MOV32_K, _MOV32_X = 0xB4, 0xBC
_JNE_K, _JNE_X = 0x55, 0x5D  # BPF_JMP | BPF_JNE | K/X
_EXIT = 0x95
R0, R1, R2, R3, R4, R5 = range(6)

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, dst | src << 4, off, imm)


def _access_bits(access: str) -> int:
    return ((BPF_DEVCG_ACC_MKNOD if "m" in access else 0) | (BPF_DEVCG_ACC_READ if "r" in access else 0)
            | (BPF_DEVCG_ACC_WRITE if "w" in access else 0))


def _block(rule: Rule) -> list[tuple[int, int, int, int, int]]:
    """One rule as (op, dst, src, off, imm); an ``off`` of ``_NEXT`` means 'to the next block'."""
    out: list[tuple[int, int, int, int, int]] = []
    if rule.kind != "a":
        kind = BPF_DEVCG_DEV_CHAR if rule.kind == "c" else BPF_DEVCG_DEV_BLOCK
        out.append((_JNE_K, R2, 0, _NEXT, kind))
    bits = _access_bits(rule.access)
    if bits != 7:  # the request must be a subset of the rule's access
        out += [(_MOV32_X, R1, R3, 0, 0), (_AND32_K, R1, 0, 0, bits), (_JNE_X, R1, R3, _NEXT, 0)]
    if rule.major != WILDCARD:
        out.append((_JNE_K, R4, 0, _NEXT, rule.major))
    if rule.minor != WILDCARD:
        out.append((_JNE_K, R5, 0, _NEXT, rule.minor))
    out += [(_MOV32_K, R0, 0, 0, int(rule.allow)), (_EXIT, 0, 0, 0, 0)]
    return out


_NEXT = -0x8000  # placeholder for "jump to the next block"


def program(rules: tuple[Rule, ...]) -> bytes:
    """The BPF program for ``rules`` (device cgroup semantics: the last matching rule wins)."""
    code = [_insn(_LDXW, R2, R1, 0), _insn(_AND32_K, R2, imm=0xFFFF),  # type
            _insn(_LDXW, R3, R1, 0), _insn(_RSH32_K, R3, imm=16),  # access
            _insn(_LDXW, R4, R1, 4), _insn(_LDXW, R5, R1, 8)]  # major, minor
    for rule in reversed(rules):
        block = _block(rule)
        for i, (op, dst, src, off, imm) in enumerate(block):
            if off == _NEXT:
                off = len(block) - i - 1  # to the first instruction after this block
            code.append(_insn(op, dst, src, off, imm))
        if len(block) == 2:  # matches every request: what follows is unreachable (the verifier refuses it)
            return b"".join(code)
    code += [_insn(_MOV32_K, R0, imm=0), _insn(_EXIT)]
    return b"".join(code)


def _bpf(cmd: int, attr: ctypes.Array[ctypes.c_char], what: str) -> int:
    nr = _SYS_BPF.get(platform.machine())
    if nr is None:
        raise OSError(0, f"bpf: syscall number unknown on {platform.machine()}")
    r = int(_libc.syscall(ctypes.c_long(nr), ctypes.c_int(cmd), attr, ctypes.c_uint(_ATTR_SIZE)))
    if r < 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")
    return r


def load(prog: bytes) -> int:
    """Load a device program; returns its fd (close-on-exec)."""
    insns = ctypes.create_string_buffer(prog, len(prog))
    license_ = ctypes.create_string_buffer(b"Apache")
    log = ctypes.create_string_buffer(65536)
    attr = ctypes.create_string_buffer(_ATTR_SIZE)
    struct.pack_into("<IIQQIIQ", attr, 0, BPF_PROG_TYPE_CGROUP_DEVICE, len(prog) // 8,
                     ctypes.addressof(insns), ctypes.addressof(license_), 1, len(log), ctypes.addressof(log))
    struct.pack_into("<16s", attr, 48, b"isobench_dev")
    struct.pack_into("<I", attr, 68, BPF_CGROUP_DEVICE)  # expected_attach_type
    try:
        return _bpf(BPF_PROG_LOAD, attr, "loading the device filter (BPF_PROG_LOAD)")
    except OSError as e:
        detail = [" | ".join(log.value.decode(errors="replace").strip().splitlines()[-4:])]
        raise OSError(e.errno, f"{e.strerror} {detail[0]}".strip()) from e


def attach(cgroup_dir: str | os.PathLike[str], prog_fd: int) -> None:
    """Attach a loaded device program to a cgroup v2 directory."""
    fd = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        attr = ctypes.create_string_buffer(_ATTR_SIZE)
        struct.pack_into("<IIII", attr, 0, fd, prog_fd, BPF_CGROUP_DEVICE, BPF_F_ALLOW_MULTI)
        _bpf(BPF_PROG_ATTACH, attr, f"attaching the device filter to {cgroup_dir}")
    finally:
        os.close(fd)


def attached(cgroup_dir: str | os.PathLike[str]) -> int:
    """How many device programs are attached to the cgroup itself (BPF_PROG_QUERY)."""
    fd = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        attr = ctypes.create_string_buffer(_ATTR_SIZE)
        # target_fd, attach_type, query_flags, attach_flags, prog_ids (NULL), prog_cnt
        struct.pack_into("<IIIIQI", attr, 0, fd, BPF_CGROUP_DEVICE, 0, 0, 0, 0)
        _bpf(BPF_PROG_QUERY, attr, f"querying the device programs of {cgroup_dir}")
        return int(struct.unpack_from("<I", attr, 24)[0])
    finally:
        os.close(fd)
