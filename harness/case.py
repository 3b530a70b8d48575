"""One cell of a scenario's matrix: what a measurement is asked to measure, once per repetition.

``harness.scenario`` builds the cases from a scenario file; the runner hands each
(with the backend's overrides applied) to the measurement it names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from runtimes.base import Limits
from runtimes.workloads import AnyWorkload


@dataclass(frozen=True)
class Case:
    """One cell of the matrix: a measurement of one workload with one parameter set."""

    measurement: str
    workload: AnyWorkload  # a catalog entry, or one a [workload.NAME] table defines (an image's process)
    limits: Limits = Limits()
    params: Mapping[str, Any] = field(default_factory=dict)  # grid values, recorded in rows
    repetitions: int = 1
    warmups: int = 0
    timeout_s: float = 60.0
    settle_s: float = 1.0  # how long memory and density let the host settle before a reading
    overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: the experiment runs only on these backends (None: every backend of the run)
    backends: tuple[str, ...] | None = None
    #: the measurement's own keys (``MeasurementInfo.options``), e.g. density's ``instances``
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        bits = [self.measurement, self.workload.name]
        bits += [f"{k}={v}" for k, v in sorted(self.params.items())]
        return "/".join(bits)

    def for_backend(self, backend: str, accel: str | None = None) -> Case:
        """This case with the backend's (then backend@accel's) overrides applied."""
        case = self
        for key in (backend, f"{backend}@{accel}" if accel else None):
            if key and key in self.overrides:
                o = dict(self.overrides[key])
                o.pop("skip", None)
                if "timeout" in o:
                    o["timeout_s"] = o.pop("timeout")
                own = {k: o.pop(k) for k in list(o) if k in case.options}
                case = replace(case, **o, options={**case.options, **own})
        return case

    def skipped_on(self, backend: str, accel: str | None = None) -> bool:
        if self.backends is not None and backend not in self.backends:
            return True
        return any(self.overrides.get(k, {}).get("skip", False)
                   for k in (backend, f"{backend}@{accel}" if accel else ""))
