"""Capabilities: cut the container's sets down to the OCI runtimes' default.

Root inside the container keeps the 14 capabilities that containerd/moby
grant by default (the set ``docker run`` gives).  ``runc spec`` writes a
smaller set (AUDIT_WRITE, KILL, NET_BIND_SERVICE); the 14 are what people run.
CAP_SYS_ADMIN is not among them, so mount/umount/pivot_root/sethostname fail inside.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from runtimes import syscalls

#: <linux/capability.h>
CAPS: dict[str, int] = {
    name: i for i, name in enumerate((
        "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
        "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
        "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
        "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD",
        "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG",
        "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE"))
}

#: containerd's / moby's default capability set for a container
OCI_DEFAULT: tuple[str, ...] = (
    "CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID", "SETFCAP",
    "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE",
)


def mask(names: Iterable[str]) -> int:
    m = 0
    for n in names:
        key = n.upper().removeprefix("CAP_")
        if key not in CAPS:
            raise ValueError(f"unknown capability {n!r}")
        m |= 1 << CAPS[key]
    return m


def names(m: int) -> list[str]:
    return [n for n, i in CAPS.items() if m >> i & 1]


def last_cap() -> int:
    """The highest capability this kernel knows (read before pivot_root: /proc changes)."""
    try:
        return int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    except (OSError, ValueError):
        return max(CAPS.values())


def restrict(keep: int, last: int) -> None:
    """Bounding set, ambient set, then effective/permitted/inheritable down to ``keep``.

    The bounding set goes first: dropping from it needs CAP_SETPCAP, which the
    final capset may remove.  For root the bounding set is what an execve
    grants, so it is the part that really limits the workload.
    """
    for cap in range(last + 1):
        if not keep >> cap & 1:
            syscalls.prctl(syscalls.PR_CAPBSET_DROP, cap)
    syscalls.prctl(syscalls.PR_CAP_AMBIENT, syscalls.PR_CAP_AMBIENT_CLEAR_ALL)
    syscalls.capset(keep, keep, 0)


def no_new_privs() -> None:
    """execve can no longer grant privileges (setuid bits, file capabilities)."""
    syscalls.prctl(syscalls.PR_SET_NO_NEW_PRIVS, 1)


def status_masks(status_text: str) -> dict[str, int]:
    """``CapEff`` etc. from a /proc/<pid>/status text, as ints (tests, doctor)."""
    out = {}
    for line in status_text.splitlines():
        key, _, value = line.partition(":")
        if key.startswith("Cap"):
            out[key] = int(value.strip(), 16)
    return out
