"""Thin ctypes wrappers over the Linux syscalls the container runtime needs.

Stdlib only.  One function per syscall, named like the libc function, taking
plain Python values and raising ``OSError`` (with errno set and a message that
names the call and its arguments) when the kernel says no.  Kernel constants
are plain ints copied from the uapi headers.  Python 3.11 has no
``os.unshare``/``os.setns`` (they arrive in 3.12), hence this module.
"""

from __future__ import annotations

import ctypes
import os
import platform

libc = ctypes.CDLL(None, use_errno=True)

# -- namespaces: <linux/sched.h> ---------------------------------------------
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_PARENT = 0x00008000  # the child's parent is the caller's parent (it reaps and waits for it)
CLONE_INTO_CGROUP = 0x200000000  # clone3 only (5.7+, cgroup v2): born in the cgroup of clone_args.cgroup

# -- mount(2) flags: <linux/mount.h> -----------------------------------------
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MNT_DETACH = 2

# -- prctl(2) options: <linux/prctl.h> ---------------------------------------
PR_SET_PDEATHSIG = 1
PR_SET_NAME = 15
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4

# -- capabilities: <linux/capability.h> --------------------------------------
_LINUX_CAPABILITY_VERSION_3 = 0x20080522

# glibc has no pivot_root() wrapper, so it goes through syscall(2).
_SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "s390x": 217}
#: clone3 has the same number on every architecture (the unified syscall table)
_SYS_CLONE3 = 435


def _err(what: str) -> OSError:
    e = ctypes.get_errno()
    return OSError(e, f"{what}: {os.strerror(e)}")


def _b(s: str | os.PathLike[str] | None) -> bytes | None:
    return None if s is None else os.fsencode(s)


libc.unshare.argtypes = (ctypes.c_int,)
libc.setns.argtypes = (ctypes.c_int, ctypes.c_int)
libc.mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p)
libc.umount2.argtypes = (ctypes.c_char_p, ctypes.c_int)
libc.sethostname.argtypes = (ctypes.c_char_p, ctypes.c_size_t)
libc.prctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong)
libc.syscall.restype = ctypes.c_long


class CapHeader(ctypes.Structure):
    _fields_ = (("version", ctypes.c_uint32), ("pid", ctypes.c_int))


class CapData(ctypes.Structure):
    _fields_ = (("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32))


libc.capget.argtypes = (ctypes.POINTER(CapHeader), ctypes.POINTER(CapData))
libc.capset.argtypes = (ctypes.POINTER(CapHeader), ctypes.POINTER(CapData))


class CloneArgs(ctypes.Structure):
    """struct clone_args, <linux/sched.h> (CLONE_ARGS_SIZE_VER2: with ``cgroup``)."""

    _fields_ = tuple((name, ctypes.c_uint64) for name in (
        "flags", "pidfd", "child_tid", "parent_tid", "exit_signal", "stack", "stack_size", "tls",
        "set_tid", "set_tid_size", "cgroup"))


# clone3 runs with the GIL held (PyDLL): the child must come back into the interpreter
# in exactly the state os.fork leaves it, which PyOS_BeforeFork/AfterFork_* arrange.
_pyapi = ctypes.PyDLL(None, use_errno=True)
_pyapi.syscall.restype = ctypes.c_long


def clone3(flags: int, cgroup_fd: int = -1, exit_signal: int = 0) -> int:
    """clone3(2) like fork(): 0 in the child, the child's pid in the caller.

    For a single-threaded caller only (as os.fork after threads, anything else is
    undefined).  ``cgroup_fd`` >= 0 adds CLONE_INTO_CGROUP.  With CLONE_PARENT the
    kernel requires ``exit_signal`` 0 (the child inherits the caller's).
    """
    args = CloneArgs(flags=flags | (CLONE_INTO_CGROUP if cgroup_fd >= 0 else 0), exit_signal=exit_signal,
                     cgroup=max(cgroup_fd, 0))
    ctypes.pythonapi.PyOS_BeforeFork()
    pid: int = _pyapi.syscall(ctypes.c_long(_SYS_CLONE3), ctypes.byref(args), ctypes.c_size_t(ctypes.sizeof(args)))
    err = ctypes.get_errno()
    if pid == 0:
        ctypes.pythonapi.PyOS_AfterFork_Child()
        return 0
    ctypes.pythonapi.PyOS_AfterFork_Parent()
    if pid < 0:
        raise OSError(err, f"clone3(flags={args.flags:#x}, cgroup={cgroup_fd}): {os.strerror(err)}")
    return pid


def unshare(flags: int) -> None:
    if libc.unshare(flags) < 0:
        raise _err(f"unshare({flags:#x})")


def setns(fd: int, nstype: int = 0) -> None:
    if libc.setns(fd, nstype) < 0:
        raise _err(f"setns({fd}, {nstype:#x})")


def mount(source: str | os.PathLike[str] | None, target: str | os.PathLike[str], fstype: str | None,
          flags: int = 0, data: str | None = None) -> None:
    if libc.mount(_b(source), _b(target), _b(fstype), flags, _b(data)) < 0:
        raise _err(f"mount({source}, {target}, {fstype}, {flags:#x}, {data})")


def umount2(target: str | os.PathLike[str], flags: int = 0) -> None:
    if libc.umount2(_b(target), flags) < 0:
        raise _err(f"umount2({target}, {flags:#x})")


def pivot_root(new_root: str | os.PathLike[str], put_old: str | os.PathLike[str]) -> None:
    nr = _SYS_PIVOT_ROOT.get(platform.machine())
    if nr is None:
        raise OSError(0, f"pivot_root: syscall number unknown on {platform.machine()}")
    if libc.syscall(ctypes.c_long(nr), ctypes.c_char_p(_b(new_root)), ctypes.c_char_p(_b(put_old))) < 0:
        raise _err(f"pivot_root({new_root}, {put_old})")


def sethostname(name: str) -> None:
    raw = name.encode()
    if libc.sethostname(raw, len(raw)) < 0:
        raise _err(f"sethostname({name!r})")


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    r: int = libc.prctl(option, arg2, arg3, arg4, arg5)
    if r < 0:
        raise _err(f"prctl({option}, {arg2}, {arg3})")
    return r


def set_name(name: str) -> None:
    """prctl(PR_SET_NAME): the comm shown by ps (15 bytes kept)."""
    buf = ctypes.create_string_buffer(name.encode()[:15])
    if libc.prctl(PR_SET_NAME, ctypes.cast(buf, ctypes.c_void_p).value or 0, 0, 0, 0) < 0:
        raise _err(f"prctl(PR_SET_NAME, {name!r})")


def capget(pid: int = 0) -> tuple[int, int, int]:
    """(effective, permitted, inheritable) as 64-bit masks."""
    hdr = CapHeader(_LINUX_CAPABILITY_VERSION_3, pid)
    data = (CapData * 2)()
    if libc.capget(ctypes.byref(hdr), data) < 0:
        raise _err(f"capget({pid})")
    lo, hi = data
    return (lo.effective | hi.effective << 32, lo.permitted | hi.permitted << 32,
            lo.inheritable | hi.inheritable << 32)


def capset(effective: int, permitted: int, inheritable: int) -> None:
    """Set this thread's capability sets (64-bit masks)."""
    hdr = CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (CapData * 2)()
    for i in (0, 1):
        shift = 32 * i
        data[i].effective = (effective >> shift) & 0xFFFFFFFF
        data[i].permitted = (permitted >> shift) & 0xFFFFFFFF
        data[i].inheritable = (inheritable >> shift) & 0xFFFFFFFF
    if libc.capset(ctypes.byref(hdr), data) < 0:
        raise _err(f"capset({effective:#x}, {permitted:#x}, {inheritable:#x})")


# -- memory mappings: <sys/mman.h> (the page cache residency of a file: mmap + mincore) -------
PROT_READ = 1
MAP_SHARED = 1
_MAP_FAILED = ctypes.c_void_p(-1).value
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long)
libc.munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
libc.mincore.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_ubyte))


def mmap(length: int, prot: int, flags: int, fd: int, offset: int = 0) -> int:
    """mmap(NULL, length, prot, flags, fd, offset): the mapping's address."""
    addr = libc.mmap(None, length, prot, flags, fd, offset)
    if addr is None or addr == _MAP_FAILED:
        raise _err(f"mmap({length}, {prot}, {flags:#x}, {fd}, {offset})")
    return int(addr)


def munmap(addr: int, length: int) -> None:
    if libc.munmap(addr, length) < 0:
        raise _err(f"munmap({addr:#x}, {length})")


def mincore(addr: int, length: int) -> bytes:
    """One byte per page of the mapping at ``addr``: bit 0 set when the page is resident (for a
    file mapping: in the page cache, whoever brought it there)."""
    pages = (length + os.sysconf("SC_PAGE_SIZE") - 1) // os.sysconf("SC_PAGE_SIZE")
    vec = (ctypes.c_ubyte * max(pages, 1))()
    if libc.mincore(addr, length, vec) < 0:
        raise _err(f"mincore({addr:#x}, {length})")
    return bytes(vec)[:pages]
