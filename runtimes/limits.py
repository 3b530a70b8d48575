"""Resource limits, the same request whatever a backend enforces them with.

A leaf module: ``runtimes.cgroups`` applies these and ``runtimes.base`` (the
backend contract) carries them in every ``LaunchSpec``; neither imports the other
for it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


def quota_us(cpu_quota: float | None, period_us: int) -> int | None:
    """A CPU quota (in CPUs) as µs per period of ``period_us``, at least 1000 (the smallest the
    kernel's CFS bandwidth and libvirt take); None for no quota."""
    return None if cpu_quota is None else max(1000, round(cpu_quota * period_us))


@dataclass(frozen=True)
class Limits:
    """Resource limits, the same request whatever the backend enforces them with."""

    cpu_quota: float | None = None  # in CPUs (0.5 = half a CPU); None = unlimited
    cpu_period_us: int = 100_000
    memory_mib: int | None = None  # hard limit, no swap beyond it
    pids: int | None = None
    #: relative CPU weight against the host's other work (cgroup v2 cpu.weight scale: 100 is
    #: the default, 1..10000; v1 cpu.shares = weight x 1024 / 100).  Enforcement runs raise it so
    #: that the quota, not busy neighbours, is what holds the workload back.
    cpu_weight: int | None = None
    #: CFS burst (v1 cpu.cfs_burst_us, v2 cpu.max.burst): quota a cgroup may carry over from idle
    #: periods, in µs; Linux >= 5.14.  None: not set (the kernel's default, no burst)
    cpu_burst_us: int | None = None

    def any(self) -> bool:
        return (self.cpu_quota is not None or self.memory_mib is not None or self.pids is not None
                or self.cpu_weight is not None or self.cpu_burst_us is not None)

    @property
    def cpu_shares(self) -> int | None:
        """``cpu_weight`` as v1 cpu.shares (and OCI's, libvirt's ``<shares>``)."""
        return None if self.cpu_weight is None else max(2, round(self.cpu_weight * 1024 / 100))

    @property
    def cpu_quota_us(self) -> int | None:
        return quota_us(self.cpu_quota, self.cpu_period_us)

    def describe(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}
