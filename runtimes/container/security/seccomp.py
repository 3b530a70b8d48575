"""Seccomp: the container engines' default profile, resolved, compiled to BPF, loaded before exec.

The ``default`` profile is Docker's (moby ``profiles/seccomp/default.json``,
v20.10.24 as in Debian's ``golang-github-docker-docker-dev``, Apache-2.0; kept
in ``profiles/docker-default.json``): an allowlist whose default is EPERM.  It
blocks keyctl/add_key/request_key, clone/unshare of new namespaces (user
namespaces included), mount, bpf, perf_event_open, kexec, open_by_handle_at,
syslog, … for a container without CAP_SYS_ADMIN.  (Podman's profile in
containers-common allows unshare, mount and keyctl and relies on capabilities
alone; pass it with ``seccomp=/usr/share/containers/seccomp.json`` to use it.)

Three steps, as the engines do them:

1. ``resolve``: the engine format (``archMap``, ``includes``/``excludes`` by
   capability, architecture and kernel version) -> an OCI ``linux.seccomp``
   object, for the container's capability set.  Exactly this object goes into
   the OCI bundles for runc/crun, so both sides enforce the same filter.
2. ``compile_bpf``: the OCI object -> a classic BPF program, through the real
   libseccomp (PyPI ``pyseccomp``), with runc's rules for unknown syscall names
   (skipped) and repeated argument indices (one rule per condition).  Done in
   the harness before t_launch, once per backend.
3. ``install``: in the container's init, after no_new_privs, right before
   execve: one prctl(PR_SET_SECCOMP) with the bytes (no libseccomp in the child).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import json
import os
import platform
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtimes import syscalls as sc
from runtimes.container.security import seccomp_schema
from runtimes.userpaths import read_regular

PROFILES = Path(__file__).with_name("profiles")
#: profile names accepted besides a path to a JSON file
DEFAULT = "default"
UNCONFINED = "unconfined"
NAMED = {DEFAULT: PROFILES / "docker-default.json"}

#: <linux/prctl.h>, <linux/seccomp.h>
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
_BPF_INSN_SIZE = 8  # struct sock_filter: u16 code, u8 jt, u8 jf, u32 k

#: Go's architecture names (used in profiles' includes/excludes) for Python's platform.machine()
_GO_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "i686": "x86", "i386": "x86", "ppc64le": "ppc64le",
            "s390x": "s390x", "riscv64": "riscv64", "armv7l": "arm"}
#: the libseccomp architecture of this machine, as profiles name it
_SCMP_ARCH = {"x86_64": "SCMP_ARCH_X86_64", "aarch64": "SCMP_ARCH_AARCH64", "i686": "SCMP_ARCH_X86",
              "ppc64le": "SCMP_ARCH_PPC64LE", "s390x": "SCMP_ARCH_S390X", "riscv64": "SCMP_ARCH_RISCV64",
              "armv7l": "SCMP_ARCH_ARM"}
_OPS = {"SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4, "SCMP_CMP_GE": 5,
        "SCMP_CMP_GT": 6, "SCMP_CMP_MASKED_EQ": 7}


class SeccompError(ValueError):
    """A profile that cannot be read, resolved or compiled; the message names it."""


#: libseccomp's SCMP_FLTATR_CTL_OPTIMIZE: 1 = priority-ordered linear program (the default), 2 = binary tree
OPTIMIZE_BINARY_TREE = 2


@dataclass(frozen=True)
class Filter:
    """A resolved profile and its compiled program."""

    name: str  # "default", or the path given
    oci: Mapping[str, Any]  # OCI linux.seccomp
    bpf: bytes

    def describe(self) -> dict[str, Any]:
        return {"profile": self.name, "default_action": self.oci["defaultAction"],
                "rules": len(self.oci["syscalls"]), "bpf_instructions": len(self.bpf) // _BPF_INSN_SIZE}


# -- 1. reading and resolving -------------------------------------------------------
def read_profile(name: str) -> dict[str, Any]:
    """A named profile or a JSON file (engine or OCI format), checked against the schema
    (``seccomp_schema``): a malformed one is one line naming the rule, never a rule lost."""
    path = NAMED.get(name, Path(name))
    try:
        data = json.loads(read_regular(path))
    except OSError as e:
        raise SeccompError(f"seccomp profile {name}: {e.strerror}") from e
    except ValueError as e:
        raise SeccompError(f"seccomp profile {name}: not JSON ({e})") from e
    try:
        return dict(seccomp_schema.validate(data, name))
    except seccomp_schema.ProfileError as e:
        raise SeccompError(str(e)) from None


def _kernel_at_least(wanted: str, release: str) -> bool:
    def parts(v: str) -> tuple[int, ...]:
        return tuple(int(p) for p in v.split("-")[0].split(".")[:2] if p.isdigit())

    return parts(release) >= parts(wanted)


def _applies(call: Mapping[str, Any], caps: frozenset[str], arch: str, release: str) -> bool:
    """moby's setupSeccomp: every exclude must miss and every include must hold."""
    ex, inc = call.get("excludes") or {}, call.get("includes") or {}
    if arch in (ex.get("arches") or ()) or caps & set(ex.get("caps") or ()):
        return False
    if ex.get("minKernel") and _kernel_at_least(ex["minKernel"], release):
        return False
    if inc.get("arches") and arch not in inc["arches"]:
        return False
    if not set(inc.get("caps") or ()) <= caps:
        return False
    return not (inc.get("minKernel") and not _kernel_at_least(inc["minKernel"], release))


def resolve(profile: Mapping[str, Any], caps: Iterable[str], *, machine: str | None = None,
            release: str | None = None) -> dict[str, Any]:
    """The engine profile, for a container with bounding set ``caps``, as OCI ``linux.seccomp``."""
    machine = machine or platform.machine()
    release = release or platform.release()
    capset = frozenset(c if c.startswith("CAP_") else f"CAP_{c}" for c in caps)
    out: dict[str, Any] = {"defaultAction": profile["defaultAction"]}
    if "defaultErrnoRet" in profile:
        out["defaultErrnoRet"] = profile["defaultErrnoRet"]
    if profile.get("architectures"):
        out["architectures"] = list(profile["architectures"])
    native = _SCMP_ARCH.get(machine)
    for entry in profile.get("archMap") or ():
        if entry.get("architecture") == native:
            out["architectures"] = [native, *entry.get("subArchitectures", [])]
    arch = _GO_ARCH.get(machine, machine)
    out["syscalls"] = []
    for call in profile.get("syscalls") or ():
        if not _applies(call, capset, arch, release):
            continue
        names = call.get("names") or ([call["name"]] if call.get("name") else [])
        rule: dict[str, Any] = {"names": list(names), "action": call["action"]}
        if call.get("errnoRet") is not None:
            rule["errnoRet"] = call["errnoRet"]
        if call.get("args"):
            rule["args"] = [{"index": a["index"], "value": a["value"], "valueTwo": a.get("valueTwo", 0),
                             "op": a["op"]} for a in call["args"]]
        out["syscalls"].append(rule)
    return out


# -- 2. compiling ---------------------------------------------------------------------
def _action(ps: Any, name: str, errno_ret: int | None) -> int:
    if name == "SCMP_ACT_ERRNO":
        return int(ps.ERRNO(errno.EPERM if errno_ret is None else errno_ret))
    if name == "SCMP_ACT_TRACE":
        return int(ps.TRACE(errno.EPERM if errno_ret is None else errno_ret))
    simple = {"SCMP_ACT_ALLOW": ps.ALLOW, "SCMP_ACT_KILL": ps.KILL, "SCMP_ACT_KILL_THREAD": ps.KILL_THREAD,
              "SCMP_ACT_KILL_PROCESS": ps.KILL_PROCESS, "SCMP_ACT_TRAP": ps.TRAP, "SCMP_ACT_LOG": ps.LOG}
    if name not in simple:
        raise SeccompError(f"seccomp action {name!r} is not supported")
    return int(simple[name])


def compile_bpf(oci: Mapping[str, Any]) -> bytes:
    """The OCI ``linux.seccomp`` object as a BPF program (runc's libcontainer/seccomp rules)."""
    try:
        import pyseccomp as ps
    except (ImportError, OSError) as e:  # OSError: libseccomp.so missing
        raise SeccompError(f"seccomp needs libseccomp and the pyseccomp module ({e}); pip install pyseccomp, "
                           f"apt-get install libseccomp2") from e
    default = _action(ps, oci["defaultAction"], oci.get("defaultErrnoRet"))
    flt = ps.SyscallFilter(default)
    with contextlib.suppress(OSError, AttributeError):  # libseccomp < 2.5: the linear program
        # The same rules as a binary tree over syscall numbers: on load the kernel emulates the
        # filter for every syscall of every architecture (its bitmap of always-allowed calls,
        # 5.11+), which walks a linear 960-instruction program ~1400 times: the load measured
        # 2.5 ms here, the tree (1200 instructions) 1.6 ms.  Every call of the workload is
        # decided in O(log n) too.
        flt.set_attr(ps.Attr.CTL_OPTIMIZE, OPTIMIZE_BINARY_TREE)
    for a in oci.get("architectures") or ():
        arch = getattr(ps.Arch, a.removeprefix("SCMP_ARCH_"), None)
        if arch is None:
            raise SeccompError(f"seccomp architecture {a!r} unknown to pyseccomp")
        if not flt.exist_arch(arch):
            flt.add_arch(arch)
    for rule in oci.get("syscalls") or ():
        action = _action(ps, rule["action"], rule.get("errnoRet"))
        if action == default:
            continue  # libseccomp refuses a rule that repeats the default action
        try:
            conds = [ps.Arg(a["index"], _OPS[a["op"]], a["value"], a.get("valueTwo", 0))
                     for a in rule.get("args") or ()]
        except KeyError as e:
            raise SeccompError(f"seccomp rule for {rule['names']}: unknown comparison {e}") from None
        indices = [a["index"] for a in rule.get("args") or ()]
        # runc: repeated argument indices mean "any of these" -> one rule per condition
        groups = [[c] for c in conds] if len(set(indices)) < len(indices) else [conds]
        # a name this libseccomp does not know (__NR_SCMP_ERROR) is skipped, as runc does: profiles
        # list the syscalls of newer kernels; a rule none of whose names is known is an error, or
        # the profile would silently lose it
        numbers = [(name, nr) for name in rule["names"] if (nr := ps.resolve_syscall(ps.Arch.NATIVE, name)) != -1]
        if not numbers:
            raise SeccompError(f"seccomp rule {rule['action']} {', '.join(rule['names'])}: no syscall of that "
                               f"name is known here ({platform.machine()}, libseccomp)")
        for name, nr in numbers:
            for group in groups:
                try:
                    flt.add_rule(action, nr, *group)
                except OSError as e:
                    raise SeccompError(f"seccomp rule {rule['action']} {name}: {e.strerror}") from e
    fd = os.memfd_create("isobench-seccomp", os.MFD_CLOEXEC)
    try:
        with os.fdopen(os.dup(fd), "wb") as f:
            flt.export_bpf(f)
        size = os.lseek(fd, 0, os.SEEK_END)
        return os.pread(fd, size, 0)
    finally:
        os.close(fd)


@functools.cache
def prepare(name: str, caps: tuple[str, ...]) -> Filter | None:
    """The filter for ``name`` (``default``, ``unconfined`` or a path) and a capability set; None when
    unconfined.  Cached: resolving and compiling takes milliseconds, so it is done before t_launch."""
    if name == UNCONFINED:
        return None
    oci = resolve(read_profile(name), caps)
    return Filter(name, oci, compile_bpf(oci))


def check(name: str) -> str | None:
    """Why ``name`` cannot be used (one line), or None."""
    if name == UNCONFINED:
        return None
    try:
        prepare(name, ())
    except SeccompError as e:
        return str(e)
    return None


# -- 3. installing (in the container's init) ----------------------------------------------
class _SockFprog(ctypes.Structure):
    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.c_void_p))


def install(bpf: bytes) -> None:
    """Load ``bpf`` as this thread's seccomp filter; needs no_new_privs (or CAP_SYS_ADMIN)."""
    if not bpf or len(bpf) % _BPF_INSN_SIZE:
        raise OSError(errno.EINVAL, f"seccomp: a BPF program of {len(bpf)} bytes is malformed")
    buf = ctypes.create_string_buffer(bpf, len(bpf))
    prog = _SockFprog(len(bpf) // _BPF_INSN_SIZE, ctypes.cast(buf, ctypes.c_void_p).value)
    try:
        sc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(prog))
    except OSError as e:
        raise OSError(e.errno, f"loading the seccomp filter: {os.strerror(e.errno or 0)}") from e


def status_mode(status_text: str) -> int | None:
    """``Seccomp:`` from a /proc/<pid>/status text (0 off, 1 strict, 2 filter)."""
    for line in status_text.splitlines():
        if line.startswith("Seccomp:"):
            return int(line.split()[1])
    return None
