"""What a process and the kernel hold, read from /proc: the quantities a leak shows in.

Each reader is one small function that answers ``None`` when the thing cannot be read (a
process gone, a file absent on this kernel), so a sampler can read a helper that has just
restarted without an exception.  Nothing here writes, and each read costs well under a
millisecond (a process with 10,000 fds would cost more: that is the leak being measured).
"""

from __future__ import annotations

import contextlib
import os

from runtimes.readiness import socket_inodes

#: the netlink family of the kernel connector, and the proc connector's multicast group (bit 0)
NETLINK_CONNECTOR = 11
CN_IDX_PROC_GROUP_BIT = 1


def _status(pid: int) -> dict[str, str]:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            out[key] = value.strip()
    return out


def rss_kib(pid: int) -> int | None:
    """Resident set size (KiB): ``VmRSS`` of /proc/PID/status."""
    with contextlib.suppress(OSError, KeyError, ValueError, IndexError):
        return int(_status(pid)["VmRSS"].split()[0])
    return None


def threads(pid: int) -> int | None:
    with contextlib.suppress(OSError, KeyError, ValueError):
        return int(_status(pid)["Threads"])
    return None


def fds(pid: int) -> int | None:
    """Open file descriptors."""
    with contextlib.suppress(OSError):
        return len(os.listdir(f"/proc/{pid}/fd"))
    return None


def connector_listeners(pid: int | None = None) -> int | None:
    """Netlink sockets of the proc connector (subscribed to its group), of ``pid`` or (None) of
    every process in this network namespace: ``/proc/net/netlink``, family 11, group bit 0.
    (The kernel's own listener count, which only IGNORE messages lower, is not exported.)"""
    mine = socket_inodes([pid]) if pid is not None else None  # (readiness asks the same of a port's owner)
    try:
        with open("/proc/net/netlink") as f:
            lines = f.read().splitlines()[1:]
    except OSError:
        return None
    n = 0
    for line in lines:
        cols = line.split()
        with contextlib.suppress(ValueError, IndexError):
            if (int(cols[1]) == NETLINK_CONNECTOR and int(cols[3], 16) & CN_IDX_PROC_GROUP_BIT
                    and (mine is None or int(cols[9]) in mine)):
                n += 1
    return n


def cgroups() -> int | None:
    """Every cgroup the kernel holds, over all hierarchies (the ``num_cgroups`` column of
    /proc/cgroups; cgroup v2 counts once per enabled controller, as v1 does)."""
    try:
        with open("/proc/cgroups") as f:
            rows = [line.split() for line in f if not line.startswith("#")]
    except OSError:
        return None
    # one hierarchy holds several controllers on v1 (cpu,cpuacct): count each hierarchy once
    by_hierarchy = {}
    for row in rows:
        with contextlib.suppress(ValueError, IndexError):
            if row[3] == "1":
                by_hierarchy[int(row[1])] = int(row[2])
    return sum(by_hierarchy.values())


def mounts(pid: int | str = "self") -> int | None:
    """Mounts in the mount namespace of ``pid``."""
    with contextlib.suppress(OSError):
        with open(f"/proc/{pid}/mountinfo") as f:
            return sum(1 for _ in f)
    return None
