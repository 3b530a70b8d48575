"""One instance's cgroup: in one (v2) or several (v1) hierarchies, made by us or wrapped."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Protocol

from runtimes.cgroups import host, tree, v1, v2
from runtimes.cgroups.files import CgroupError, write
from runtimes.limits import Limits
from runtimes.naming import BadName, check_object_name


class Driver(Protocol):
    """What differs between v1 and v2 (``runtimes.cgroups.v1`` and ``.v2`` are the two);
    where a cgroup goes (``host.parent_dirs``), kill and remove (``tree``) are shared."""

    VERSION: int

    def apply(self, dirs: dict[str, Path], limits: Limits) -> None: ...

    def usage(self, dirs: dict[str, Path]) -> dict[str, float]: ...

    def cpu_counters(self, dirs: dict[str, Path]) -> dict[str, float]: ...


DRIVERS: dict[int, Driver] = {1: v1, 2: v2}


def validate_limits(limits: Limits) -> None:
    """Reject what no kernel accepts, before anything is created."""
    if limits.cpu_quota is not None and not (math.isfinite(limits.cpu_quota) and limits.cpu_quota > 0):
        raise CgroupError(f"cpu quota must be > 0 CPUs (and finite), got {limits.cpu_quota}")
    if not 1000 <= limits.cpu_period_us <= 1_000_000:
        raise CgroupError(f"cpu period must be 1000..1000000 us, got {limits.cpu_period_us}")
    if limits.memory_mib is not None and limits.memory_mib < 4:
        raise CgroupError(f"memory limit must be >= 4 MiB, got {limits.memory_mib}")
    if limits.cpu_burst_us is not None and (limits.cpu_quota is None or limits.cpu_burst_us < 0):
        raise CgroupError(f"cpu burst needs a quota and must be >= 0 us, got {limits.cpu_burst_us}")
    if limits.cpu_weight is not None and not 1 <= limits.cpu_weight <= 10_000:
        raise CgroupError(f"cpu weight must be 1..10000, got {limits.cpu_weight}")
    if limits.pids is not None and limits.pids < 1:
        raise CgroupError(f"pids limit must be >= 1, got {limits.pids}")


class Cgroup:
    """One instance's cgroup.

    ``Cgroup.create`` makes one below our own cgroup; ``Cgroup.wrap`` (or the
    constructor) takes directories someone else made (an OCI runtime's, libvirt's
    machine cgroup) so that ``usage()``, ``pids()``, ``kill()`` and ``remove()``
    work the same on them.
    """

    def __init__(self, name: str, version: int, dirs: dict[str, Path]):
        self.name = name
        self.version = version
        #: v1: controller -> directory; v2: {"": directory}
        self.dirs = dirs
        self.removed = False
        self._driver = DRIVERS[version]

    # -- creation ---------------------------------------------------------
    @classmethod
    def create(cls, name: str, limits: Limits = Limits(), *, v: int | None = None) -> Cgroup:
        """Make the cgroup below our own and apply ``limits``; all or nothing."""
        try:
            check_object_name(name)  # a name, not a path: "/" or ".." would leave our subtree
        except BadName as e:
            raise CgroupError(f"cgroup {e}") from None
        validate_limits(limits)
        v = v or host.version()
        cg = cls(name, v, host.dirs_for(name, v))
        made: list[Path] = []
        try:
            for d in cg.unique_dirs():
                try:
                    os.mkdir(d)
                except FileExistsError:
                    # someone's live instance, or a leftover: never take it over (or remove it)
                    raise CgroupError(f"cgroup {d} already exists (a leftover? `isobench cleanup` "
                                      f"removes those)") from None
                made.append(d)
            cg.apply(limits)
        except BaseException:
            for d in reversed(made):  # only what this call made; nothing runs in it yet
                tree.rmdir(d)
            raise
        return cg

    @classmethod
    def wrap(cls, name: str, dirs: dict[str, Path]) -> Cgroup:
        """A cgroup someone else made: ``{"": dir}`` is a v2 one, ``{controller: dir}`` v1."""
        return cls(name, 2 if set(dirs) == {""} else 1, dict(dirs))

    def apply(self, limits: Limits) -> None:
        self._driver.apply(self.dirs, limits)

    # -- processes --------------------------------------------------------
    def unique_dirs(self) -> list[Path]:
        """Each directory once (v1 cpu and cpuacct may share a hierarchy)."""
        return list(dict.fromkeys(self.dirs.values()))

    def procs_files(self) -> list[Path]:
        return [d / "cgroup.procs" for d in self.unique_dirs()]

    def join_files(self) -> list[Path]:
        """Where a process writes "0" to move itself in: v1's ``tasks`` (its one thread: no wait
        for an RCU grace period, ``init._join_cgroup``), ``cgroup.procs`` on the unified hierarchy."""
        files = {d: d / ("cgroup.procs" if self.version == 2 or k == v1.UNIFIED else "tasks")
                 for k, d in self.dirs.items()}
        return list(files.values())

    def attach(self, pid: int) -> None:
        for f in self.procs_files():
            write(f, str(pid))

    def dir_fd(self) -> int:
        """v2 only: an O_PATH-able directory fd for ``clone3(CLONE_INTO_CGROUP)``."""
        if self.version != 2:
            raise CgroupError("CLONE_INTO_CGROUP needs cgroup v2")
        return os.open(self.dirs[""], os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)

    def pids(self) -> list[int]:
        """Every process in the cgroup, and in cgroups the workload made below it."""
        return tree.pids(self.unique_dirs())

    def kill(self, timeout: float = tree.GONE_TIMEOUT_S) -> None:
        """SIGKILL everything inside (sub-cgroups included) and wait until it is gone."""
        tree.kill(self.unique_dirs(), self.name, timeout)

    # -- counters ---------------------------------------------------------
    def usage(self) -> dict[str, float]:
        return self._driver.usage(self.dirs)

    def cpu_counters(self) -> dict[str, float]:
        """Only the CPU counters of ``usage()`` (same keys), cheap enough to read every CFS period."""
        return self._driver.cpu_counters(self.dirs)

    # -- teardown ---------------------------------------------------------
    def remove(self) -> None:
        """Kill what is left, then remove every directory, deepest first; safe to call twice."""
        if self.removed:
            return
        tree.remove(self.unique_dirs(), self.name)
        self.removed = True

    def __repr__(self) -> str:
        return f"Cgroup({self.name!r}, v{self.version})"
