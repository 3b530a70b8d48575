"""The ``bare`` backend: fork/exec of the workload on the host, the reference point.

With limits (or ``extra["cgroup"]``) the child places itself into a fresh
cgroup below the harness's own before it execs, so nothing it forks escapes.
"""

from __future__ import annotations

import os
from typing import Any

from runtimes.base import Backend, Instance, LaunchSpec, Timestamps, now_ns
from runtimes.cgroups import Cgroup
from runtimes.declaration import Declaration
from runtimes.process import ProcessInstance, instance_log, launching
from runtimes.workloads import BUSYBOX


class BareBackend(Backend):
    name = "bare"

    def available(self) -> str | None:
        if not os.path.exists(BUSYBOX):
            return f"{BUSYBOX} missing (fix: apt-get install busybox-static)"
        return None

    def launch(self, spec: LaunchSpec) -> Instance:
        argv = self.command(list(spec.extra.get("argv") or spec.workload.argv()))
        what = f"cannot start {spec.workload.name}"
        with instance_log(spec, "bare", what) as stdio:  # before t_launch, as for every backend
            times = Timestamps(t_launch=now_ns())
            cgroup = None
            if spec.limits.any() or spec.extra.get("cgroup"):
                cgroup = Cgroup.create(spec.instance, spec.limits)
                times.phases["cgroup_create"] = times.since_launch()
            inst = ProcessInstance(spec, cgroup, times, stdio)
            with launching(inst, what):
                inst._spawn(argv)
        return inst

    def command(self, argv: list[str]) -> list[str]:
        """The host command line that runs ``argv`` (a wrapper such as unshare(1) prefixes it)."""
        return argv

    def metadata(self) -> dict[str, Any]:
        return {"busybox": os.path.realpath(BUSYBOX)}


DECLARATION = Declaration(
    name="bare",
    factory="runtimes.bare:BareBackend",
    label="fork/exec on the host",
    in_words="bare metal",
    colour="#555555",
    reference=True,
)
