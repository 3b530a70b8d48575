"""Launch latency of the container backend next to bare fork/exec and ``unshare(1)``.

A bench helper, not a test, kept beside the microbenchmarks (not in the runtime):
``measure(n)`` launches the ``noop`` workload ``n`` times each way, interleaved
(so drifting machine load hits all alike), in this one process, and returns the
raw launch->ready times in ms per way:

``bare``              ``BareBackend`` (fork/exec, no cgroup)
``unshare``           ``runtimes.unshare.UnshareBackend``: ``unshare --fork --pid --mount-proc
                      --mount --uts --ipc --net --cgroup -- <noop>`` started like bare
``container``         ``ContainerBackend`` as the benchmarks run it (instance cgroup)
``container_nocgroup`` the same without a cgroup (``extra cgroup=False``)

``python -m benchmarks.launch_compare [N]`` prints medians and the container's phases.
"""

from __future__ import annotations

import os
import statistics
import sys
from collections.abc import Callable

from runtimes.bare import BareBackend
from runtimes.base import PREFIX, Instance, LaunchSpec
from runtimes.container.backend import ContainerBackend
from runtimes.unshare import UnshareBackend
from runtimes.workloads import Workload

WAYS = ("bare", "unshare", "container", "container_nocgroup")


def measure(n: int = 20, *, phases: dict[str, list[float]] | None = None,
            ways: tuple[str, ...] = WAYS) -> dict[str, list[float]]:
    """``n`` launch->ready times (ms) per way; container phases (ms) go into ``phases`` if given."""
    ctr = ContainerBackend()
    launchers: dict[str, Callable[[LaunchSpec], Instance]] = {
        "bare": BareBackend().launch, "unshare": UnshareBackend().launch,
        "container": ctr.launch, "container_nocgroup": ctr.launch,
    }
    run = f"cmp{os.getpid()}"
    out: dict[str, list[float]] = {w: [] for w in ways}
    k = 0
    for i in range(n + 1):  # the first round warms caches (rootfs hash, pyroute2 import) and is dropped
        for way in ways:
            spec = LaunchSpec(workload=Workload("noop"), run_id=run, instance=f"{PREFIX}-{run}-{k}",
                              extra={"cgroup": False} if way == "container_nocgroup" else {})
            k += 1
            with launchers[way](spec) as inst:
                inst.wait_ready(10)
                inst.wait(10)
            if i == 0:
                continue
            t = inst.times
            out[way].append((t.t_ready - t.t_launch) / 1e6)  # type: ignore[operator]
            if way == "container" and phases is not None:
                for name, ns in t.phases.items():
                    phases.setdefault(name, []).append(ns / 1e6)
    return out


def main(argv: list[str]) -> int:
    n = int(argv[0]) if argv else 20
    phases: dict[str, list[float]] = {}
    res = measure(n, phases=phases)
    for way, vals in res.items():
        print(f"{way:20s} median {statistics.median(vals):7.2f} ms  (min {min(vals):.2f}, max {max(vals):.2f}, n={len(vals)})")
    print("container phases (median ms): " + ", ".join(f"{k} {statistics.median(v):.2f}" for k, v in phases.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
