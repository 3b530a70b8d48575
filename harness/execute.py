"""``isobench exec``: one command in one environment, output and exit status passed through."""

from __future__ import annotations

import sys

import runtimes
from harness.errors import UserError
from harness.results import new_run_id
from runtimes.base import PREFIX, InstanceTimeout, LaunchSpec, Limits
from runtimes.declaration import OptionError
from runtimes.workloads import Workload

NO_TIMEOUT = 10 * 365 * 86400.0


def run(backend_name: str, argv: list[str], *, cpus: float | None = None, period_ms: float = 100.0,
        memory: int | None = None, pids: int | None = None, timeout: float | None = None,
        seccomp: str | None = None) -> int:
    options = {"seccomp": seccomp} if seccomp is not None else {}
    try:
        declared = runtimes.declaration(backend_name).check_options(options)
        backend = runtimes.get(backend_name)
    except KeyError as e:
        raise UserError(str(e.args[0])) from e
    except OptionError as e:  # e.g. --seccomp for a backend without that option
        raise UserError(f"backend {backend_name}: --{e.key}: {e}") from e
    reason = backend.available()
    if reason:
        raise UserError(f"backend {backend_name} unavailable: {reason}")
    limits = Limits(cpu_quota=cpus, cpu_period_us=round(period_ms * 1000), memory_mib=memory, pids=pids)
    run_id = "exec" + new_run_id().replace("-", "")[-6:]
    spec = LaunchSpec(workload=Workload("noop"), run_id=run_id, instance=f"{PREFIX}-{run_id}-0",
                      limits=limits, timeout_s=timeout or NO_TIMEOUT,
                      extra={**declared, "argv": list(argv), "stdio": "inherit"})
    try:
        with backend.launch(spec) as inst:
            try:
                status = inst.wait(timeout or NO_TIMEOUT)
            except InstanceTimeout:
                print(f"isobench: exec: killed after {timeout:g} s", file=sys.stderr)
                return 124
    finally:
        backend.close()
    # a signal death is reported the way shells do
    return 128 - status if status < 0 else status
