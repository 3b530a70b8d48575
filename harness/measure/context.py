"""What a measurement needs from the run besides the backend and the case."""

from __future__ import annotations

import contextlib
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import runtimes
from runtimes.base import PREFIX, Backend, BackendError, Instance, LaunchSpec, Limits
from runtimes.workloads import AnyWorkload


@dataclass
class Context:
    run_id: str
    log_dir: Path
    #: backend name -> accelerator ("kvm"/"tcg") for backends that have one
    accel: dict[str, str] = field(default_factory=dict)
    #: per-backend launch options from the scenario, as its declaration checked them
    backend_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: values measurements cache across repetitions (e.g. the reference footprint)
    cache: dict[Any, Any] = field(default_factory=dict)
    #: the backends the run opened (the runner's), by name
    backends: dict[str, Backend] = field(default_factory=dict)
    #: owns what ``open_backend`` opens beyond the run's backends (closed with the run)
    stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    #: instances launched through ``launch`` that were not cleaned up yet (the factory's list)
    live: list[Instance] = field(default_factory=list)
    _counter: itertools.count[int] = field(default_factory=itertools.count)

    def launch(self, backend: Backend, spec: LaunchSpec) -> Instance:
        """Launch ``spec`` on ``backend``, owned by this context until the caller cleaned it up:
        whatever a measurement leaves behind, ``cleanup_live`` (the runner's last word) removes."""
        self.live = [i for i in self.live if not i._cleaned]
        if spec.workload.image is not None and not runtimes.declaration(backend.name).images:
            raise BackendError(f"{backend.name} runs no image workload ({spec.workload.name}: image "
                               f"{spec.workload.image.name})")
        inst = backend.launch(spec)
        self.live.append(inst)
        return inst

    def cleanup_live(self) -> None:
        """Clean up every instance still live, newest first (idempotent per instance)."""
        while self.live:
            self.live.pop().cleanup()

    def instance_name(self) -> str:
        """``isobench-<run_id>-<n>``: unique, and recognisable by ``isobench cleanup``."""
        return f"{PREFIX}-{self.run_id}-{next(self._counter)}"

    def open_backend(self, name: str) -> Backend:
        """Backend ``name``: the run's own if it has it, else opened once and closed with the run."""
        if name not in self.backends:
            backend = runtimes.get(name)
            self.stack.callback(backend.close)
            self.backends[name] = backend
        return self.backends[name]

    def spec(self, backend: Backend, workload: AnyWorkload, limits: Limits = Limits(),
             timeout_s: float = 60.0, **extra: Any) -> LaunchSpec:
        declaration = runtimes.declaration(backend.name)
        options = declaration.check_options(self.backend_options.get(backend.name, {}))
        fields, declared_extra = declaration.split_options(options)
        return LaunchSpec(
            workload=workload,
            run_id=self.run_id,
            instance=self.instance_name(),
            limits=limits,
            timeout_s=timeout_s,
            log_dir=str(self.log_dir),
            extra={**declared_extra, **extra},
            **fields,
        )
