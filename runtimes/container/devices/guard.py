"""The kernel's device rules for a container backend's instances: what each launch does, once.

- cgroup v1: one devices cgroup for every container of the backend -- the rules are the same
  for all, and writing them per instance cost ~0.7 ms of each launch.  ``prepare`` makes it
  before the first t_launch (like the zygote), each init joins it with its other cgroups
  (``attach_files``), ``close`` removes it.  It is named after this process, so that
  ``isobench cleanup`` removes the one a killed harness left.  ``container:cold`` (everything
  per launch) makes one per instance instead, removed with it.
- cgroup v2: one BPF_PROG_TYPE_CGROUP_DEVICE program, loaded once, attached to each instance's
  cgroup (``bpf.py``), gone with it.
"""

from __future__ import annotations

import os

from runtimes import cgroups
from runtimes.base import BackendError
from runtimes.cgroups import Cgroup, CgroupError
from runtimes.container.devices import bpf
from runtimes.container.devices.rules import DeviceCgroup, Rule, shared_name


class DeviceGuard:
    def __init__(self, rules: tuple[Rule, ...], owner: str, per_instance: bool):
        self.rules = rules
        self.owner = owner  # the backend's name, for the shared cgroup's
        self.per_instance = per_instance
        self._program: int | None = None  # v2
        self._shared: DeviceCgroup | None = None  # v1

    def prepare(self) -> None:
        """Everything that does not depend on an instance (before t_launch)."""
        if cgroups.version() == 2:
            self._load()
        elif not self.per_instance:
            self.shared()

    def guard(self, name: str, cgroup: Cgroup | None) -> tuple[DeviceCgroup | None, bool]:
        """Put the rules on instance ``name``: (the v1 devices cgroup its init joins, whether the
        instance owns it); (None, False) on v2, where the program goes on its ``cgroup``."""
        if cgroup is not None and cgroup.version == 2:
            bpf.attach(cgroup.dirs[""], self._load())
            return None, False
        if cgroups.version() != 1:  # v2 without an instance cgroup: nothing to hold a program
            return None, False
        if self.per_instance:
            return DeviceCgroup.create(name, self.rules), True
        return self.shared(), False

    def shared(self) -> DeviceCgroup:
        if self._shared is None:
            try:
                self._shared = DeviceCgroup.create(shared_name(self.owner, id(self)), self.rules)
            except CgroupError as e:
                raise BackendError(f"the containers' devices cgroup: {e}") from e
        return self._shared

    def _load(self) -> int:
        if self._program is None:
            try:
                self._program = bpf.load(bpf.program(self.rules))
            except OSError as e:
                raise BackendError(f"cgroup v2 device filter: {e.strerror}") from e
        return self._program

    def close(self) -> None:
        """After the instances are gone: the shared cgroup is empty (``remove`` kills a straggler)."""
        if self._program is not None:
            os.close(self._program)
            self._program = None
        if self._shared is not None:
            self._shared.remove()
            self._shared = None
