"""One stored observation: the row format of ``samples.jsonl`` (see ``harness.results``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Sample:
    """One observation. ``value`` is None when ``status`` is ``failed`` (``error`` says why)."""

    backend: str
    workload: str
    measurement: str  # startup | memory | density | cpu_quota | mem_limit | pids_limit
    metric: str  # e.g. launch_to_ready, pss_overhead, cpu_ratio (see docs/metrics.md)
    value: float | None
    unit: str  # ms, MiB, cpus, ratio, count, bool, ...
    params: Mapping[str, Any] = field(default_factory=dict)
    repetition: int = 0
    warmup: bool = False
    status: str = "ok"  # ok | failed
    error: str | None = None
    accel: str | None = None  # kvm | tcg for VM backends
    note: str | None = None  # e.g. how a backend enforced a limit differently
    case: str = ""  # stable id of the matrix cell (measurement/workload/params)
    #: where in the run the step ran (0-based), what ran just before it, and the host's state
    #: at its launch (load1, steal_pct, psi_cpu_some_avg10, harness_rss_mib): see harness.schedule
    position: int | None = None
    predecessor: str | None = None
    conditions: Mapping[str, float] = field(default_factory=dict)
    #: an image workload's image: its manifest digest (``sha256:…``); None for catalog workloads
    image: str | None = None
