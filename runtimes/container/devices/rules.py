"""Which devices a container may use, enforced by the kernel's device cgroup.

The rules are runc's default allowlist (libcontainer/specconv ``AllowedDevices``,
what every runc/crun container gets): everything denied, then mknod of any node
allowed (``m``: the node is useless without read/write), and read/write/mknod
of the six nodes the container sees (null zero full random urandom tty) plus
/dev/pts/*, /dev/ptmx and /dev/net/tun.

- cgroup v1: a directory below our own in the ``devices`` hierarchy, ``a``
  denied, the rules allowed (``DeviceCgroup``), joined together with the
  instance's other cgroups.
- cgroup v2: a BPF_PROG_TYPE_CGROUP_DEVICE program attached to the instance's
  cgroup (``bpf.py``).
- OCI: the same rules as ``linux.resources.devices`` (``oci_rules``).

Nodes a workload makes itself are also unusable because every writable mount
in the container is ``nodev`` (``mounts.py``); the kernel rules are the second
wall, and the one runc/crun build.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtimes import cgroups, owners
from runtimes.cgroups import Cgroup, CgroupError
from runtimes.cgroups.files import write
from runtimes.naming import PREFIX

WILDCARD = -1
#: v1: the devices cgroup all containers of one backend share (``guard.py``), named after the
#: harness process (pid and start time, ``owners.Owner.tag``):
#: ``isobench-devices-<pid>.<start>-<backend>-<id>``
SHARED_PREFIX = f"{PREFIX}-devices-"


def shared_name(owner: str, ident: int) -> str:
    return f"{SHARED_PREFIX}{owners.me().tag()}-{owner.replace(':', '-')}-{ident:x}"


def shared_owner(name: str) -> owners.Owner | None:
    """The harness a shared devices cgroup belongs to; None for any other name."""
    tag = name.removeprefix(SHARED_PREFIX).partition("-")[0] if name.startswith(SHARED_PREFIX) else ""
    return owners.Owner.parse(tag)


@dataclass(frozen=True)
class Rule:
    kind: str  # "c", "b" or "a" (all)
    major: int = WILDCARD
    minor: int = WILDCARD
    access: str = "rwm"
    allow: bool = True

    def v1(self) -> str:
        """The line for devices.allow / devices.deny."""
        if self.kind == "a":
            return "a"
        num = lambda n: "*" if n == WILDCARD else str(n)  # noqa: E731
        return f"{self.kind} {num(self.major)}:{num(self.minor)} {self.access}"

    def oci(self) -> dict[str, Any]:
        out: dict[str, Any] = {"allow": self.allow, "access": self.access}
        if self.kind != "a":
            out["type"] = self.kind
        if self.major != WILDCARD:
            out["major"] = self.major
        if self.minor != WILDCARD:
            out["minor"] = self.minor
        return out


#: runc's AllowedDevices (libcontainer/specconv/spec_linux.go), after a deny-all
DEFAULT_RULES: tuple[Rule, ...] = (
    Rule("a", allow=False),
    Rule("c", access="m"), Rule("b", access="m"),
    Rule("c", 1, 3), Rule("c", 1, 8), Rule("c", 1, 7), Rule("c", 5, 0), Rule("c", 1, 5), Rule("c", 1, 9),
    Rule("c", 136), Rule("c", 5, 2), Rule("c", 10, 200),
)


def oci_rules(rules: tuple[Rule, ...] = DEFAULT_RULES) -> list[dict[str, Any]]:
    """``linux.resources.devices`` for the OCI bundles."""
    return [r.oci() for r in rules]


def matches(rule: Rule, kind: str, major: int, minor: int, access: str) -> bool:
    return (rule.kind in ("a", kind) and rule.major in (WILDCARD, major) and rule.minor in (WILDCARD, minor)
            and set(access) <= set(rule.access))


def allows(rules: tuple[Rule, ...], kind: str, major: int, minor: int, access: str) -> bool:
    """The verdict for one request as the BPF program decides it: the last rule that covers
    the request wins; nothing covers it -> denied (the v1 controller agrees for allowlists)."""
    for r in reversed(rules):
        if matches(r, kind, major, minor, access):
            return r.allow
    return False


class DeviceCgroup:
    """cgroup v1: the instance's directory in the ``devices`` hierarchy, below our own.

    Processes, kill and removal (sub-cgroups too, deepest first) are the cgroups
    package's, through ``Cgroup.wrap``."""

    def __init__(self, cgroup: Cgroup):
        self.cgroup = cgroup
        self.path = cgroup.dirs["devices"]

    @staticmethod
    def hierarchy() -> Path | None:
        """Our own cgroup in the v1 ``devices`` hierarchy (None when it is not mounted)."""
        return cgroups.host_dir("devices", cgroups.own_paths().get("devices", "/"))

    @classmethod
    def create(cls, name: str, rules: tuple[Rule, ...] = DEFAULT_RULES) -> DeviceCgroup:
        if PREFIX not in name:
            raise CgroupError(f"cgroup name {name!r} must contain {PREFIX!r}")
        base = cls.hierarchy()
        if base is None:
            raise CgroupError("cgroup v1 controller not mounted: devices")
        d = base / name
        try:
            os.mkdir(d)
        except FileExistsError:
            raise CgroupError(f"cgroup {d} already exists (a leftover? `isobench cleanup` removes those)") from None
        except OSError as e:
            raise CgroupError(f"cannot create {d}: {e.strerror}") from e
        dev = cls(Cgroup.wrap(name, {"devices": d}))
        try:
            dev.apply(rules)
        except BaseException:
            dev.remove()
            raise
        return dev

    def apply(self, rules: tuple[Rule, ...]) -> None:
        for r in rules:
            write(self.path / ("devices.allow" if r.allow else "devices.deny"), r.v1())

    def attach(self, pid: int) -> None:
        self.cgroup.attach(pid)

    def pids(self) -> list[int]:
        return self.cgroup.pids()

    def listing(self) -> list[str]:
        """``devices.list`` as the kernel reports it."""
        return (self.path / "devices.list").read_text().split("\n")[:-1]

    def remove(self) -> None:
        """Kill what is left (also in sub-cgroups), remove deepest first; idempotent."""
        self.cgroup.remove()
