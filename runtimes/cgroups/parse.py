"""The two texts every cgroup question starts from: ``/proc/<pid>/mountinfo`` (where each
hierarchy is mounted) and ``/proc/<pid>/cgroup`` (where a process sits in each).

Pure functions of text, so they are tested without root on any host.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

#: v1 controllers a hierarchy can carry (``name=...`` hierarchies are kept as well)
V1_KNOWN = frozenset(("cpu", "cpuacct", "cpuset", "memory", "pids", "blkio", "freezer", "devices",
                      "hugetlb", "net_cls", "net_prio", "perf_event", "rdma", "misc"))


@dataclass(frozen=True)
class Mount:
    """One mounted cgroup hierarchy."""

    path: Path
    version: int
    #: v1: its controllers (and ``name=...``); cgroup2: empty
    controllers: frozenset[str]
    #: the cgroup shown at ``path`` (mountinfo's root field): "/" unless a sub-tree is mounted
    root: str = "/"

    def host_path(self, cgroup_path: str) -> Path | None:
        """Where cgroup ``cgroup_path`` (as /proc/<pid>/cgroup names it) is, below this
        mount; None when the mount does not show it."""
        rel = os.path.relpath(cgroup_path, self.root)
        if rel == ".." or rel.startswith("../"):
            return None
        return self.path if rel == "." else self.path / rel


@dataclass(frozen=True)
class Membership:
    """One line of /proc/<pid>/cgroup: the process's cgroup in one hierarchy."""

    hierarchy: int
    #: v1: the hierarchy's controllers (and ``name=...``); the unified (v2) line: empty
    controllers: frozenset[str]
    path: str

    @property
    def unified(self) -> bool:
        return self.hierarchy == 0 and not self.controllers


def parse_mountinfo(text: str) -> list[Mount]:
    """Every cgroup and cgroup2 mount, in mount order (a hierarchy may appear twice)."""
    found: list[Mount] = []
    for line in text.splitlines():
        pre, _, post = line.partition(" - ")
        fields, tail = pre.split(), post.split()
        if len(fields) < 5 or len(tail) < 1 or tail[0] not in ("cgroup", "cgroup2"):
            continue
        if tail[0] == "cgroup2":
            found.append(Mount(Path(fields[4]), 2, frozenset(), fields[3]))
            continue
        opts = tail[2].split(",") if len(tail) >= 3 else []
        ctrls = frozenset(o for o in opts if o in V1_KNOWN or o.startswith("name="))
        found.append(Mount(Path(fields[4]), 1, ctrls, fields[3]))
    return found


def parse_proc_cgroup(text: str) -> list[Membership]:
    found: list[Membership] = []
    for line in text.splitlines():
        if not line:
            continue
        hid, ctrls, path = line.split(":", 2)
        found.append(Membership(int(hid), frozenset(c for c in ctrls.split(",") if c), path))
    return found


def paths_by_controller(memberships: list[Membership]) -> dict[str, str]:
    """Controller -> cgroup path; "" names the unified (v2) hierarchy; named v1
    hierarchies (``name=systemd``) carry no controller and are left out."""
    paths: dict[str, str] = {}
    for m in memberships:
        if not m.controllers:
            paths[""] = m.path
            continue
        for c in m.controllers:
            if not c.startswith("name="):
                paths[c] = m.path
    return paths


def favordynmods(mountinfo: str, cmdline: str) -> dict[str, object]:
    """Whether moving a process between cgroups skips the wait for an RCU grace period.

    Writing a pid to ``cgroup.procs`` takes the global threadgroup lock for writing,
    which waits for a grace period (8-12 ms measured on a v1 host) unless a hierarchy
    is mounted with ``favordynmods`` (6.0+; one such mount is enough: the lock is
    global) or the kernel booted with ``cgroup_favordynmods=1`` (6.7+, which sets the
    option on every hierarchy).  ``mounts``: the hierarchies mounted with it.
    """
    with_option = []
    for line in mountinfo.splitlines():
        pre, _, post = line.partition(" - ")
        tail = post.split()
        if len(tail) >= 3 and tail[0] in ("cgroup", "cgroup2") and "favordynmods" in tail[2].split(","):
            with_option.append(pre.split()[4])
    boot = next((arg.partition("=")[2] for arg in cmdline.split() if arg.startswith("cgroup_favordynmods=")), None)
    return {"favordynmods": bool(with_option), "mounts": with_option, "boot_option": boot}
