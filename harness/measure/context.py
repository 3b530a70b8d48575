"""What a measurement needs from the run besides the backend and the case."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtimes.base import PREFIX, Backend, LaunchSpec, Limits
from runtimes.workloads import Workload


@dataclass
class Context:
    run_id: str
    log_dir: Path
    #: backend name -> accelerator ("kvm"/"tcg") for VM-like backends
    accel: dict[str, str] = field(default_factory=dict)
    #: per-backend launch options from the scenario (e.g. vm vcpus / memory)
    backend_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: values measurements cache across repetitions (e.g. the bare footprint)
    cache: dict[Any, Any] = field(default_factory=dict)
    _counter: itertools.count = field(default_factory=itertools.count)

    def instance_name(self) -> str:
        """``isobench-<run_id>-<n>``: unique, and recognisable by ``isobench cleanup``."""
        return f"{PREFIX}-{self.run_id}-{next(self._counter)}"

    def spec(self, backend: Backend, workload: Workload, limits: Limits = Limits(),
             timeout_s: float = 60.0, **extra: Any) -> LaunchSpec:
        opts = dict(self.backend_options.get(backend.name, {}))
        return LaunchSpec(
            workload=workload,
            run_id=self.run_id,
            instance=self.instance_name(),
            limits=limits,
            timeout_s=timeout_s,
            vcpus=int(opts.pop("vcpus", 1)),
            guest_memory_mib=int(opts.pop("memory_mib", 256)),
            log_dir=str(self.log_dir),
            extra={**opts, **extra},
        )
