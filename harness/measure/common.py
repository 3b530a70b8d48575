"""Small pieces every measurement shares: launching, row building, host memory.

Measurements only talk to ``runtimes.base`` (``Backend``/``Instance``) and ask the
backend's declaration (``runtimes.declaration``) what it is, so the same code
measures every registered backend.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import psutil

import runtimes
from harness.metric import CATALOGUE
from harness.results import Sample
from runtimes.base import Backend, Instance, Limits

if TYPE_CHECKING:  # pragma: no cover
    from harness.case import Case
    from harness.measure.context import Context

MIB = 1 << 20
NS_PER_MS = 1_000_000


def launch(backend: Backend, case: Case, ctx: Context, limits: Limits | None = None) -> Instance:
    """Launch the case's workload; the caller owns the instance (``with inst:``)."""
    spec = ctx.spec(backend, case.workload, case.limits if limits is None else limits, case.timeout_s)
    return ctx.launch(backend, spec)


def enforcement_note(backend: Backend, what: str) -> str | None:
    """How ``backend`` enforces ``what`` (cpu/memory/pids), when that is not the default cgroup way."""
    return runtimes.declaration(backend.name).enforcement_note(what)


def is_guest(backend: Backend) -> bool:
    """The backend boots its own kernel: it honours ``spec.vcpus`` and reports from inside."""
    return runtimes.is_guest(backend.name)


def accel_of(backend: Backend, ctx: Context, inst: Instance | None = None) -> str | None:
    return (getattr(inst, "accel", None) if inst is not None else None) or ctx.accel.get(backend.name)


@dataclass
class Rows:
    """Builds the ``Sample`` rows of one measurement call with the shared fields filled in."""

    backend: Backend
    case: Case
    ctx: Context
    repetition: int
    warmup: bool
    note: str | None = None  # default note for every row (e.g. the enforcement words)
    accel: str | None = None
    samples: list[Sample] = field(default_factory=list)

    def seen(self, inst: Instance) -> None:
        """Record the accelerator the instance actually ran on."""
        self.accel = accel_of(self.backend, self.ctx, inst)

    def add(self, metric: str, value: float, unit: str | None = None, *, note: str | None = None,
            **params: Any) -> None:
        """One row; its unit is the metric's declared one (``harness.metric``)."""
        declared = CATALOGUE.unit(metric)
        if unit is not None and unit != declared:
            raise ValueError(f"metric {metric} is declared in {declared}, not {unit}")
        unit = declared
        self.samples.append(Sample(
            backend=self.backend.name, workload=self.case.workload.name,
            measurement=self.case.measurement, metric=metric, value=float(value), unit=unit,
            params={**self.case.params, **params}, repetition=self.repetition, warmup=self.warmup,
            accel=self.accel or self.ctx.accel.get(self.backend.name),
            note=note if note is not None else self.note, case=self.case.id, image=image_digest(self.case)))


def image_digest(case: Case) -> str | None:
    """The digest of the case's image (rows carry it), None for a catalog workload."""
    image = case.workload.image
    return image.digest if image is not None else None


def ns_to_ms(ns: float) -> float:
    return ns / NS_PER_MS


def mem_available() -> int:
    """The kernel's estimate of memory available without swapping (MemAvailable), bytes."""
    return int(psutil.virtual_memory().available)


def reported(report: Mapping[str, Any], key: str) -> float | None:
    """The number a guest or workload reported under ``key`` (exactly as the runtime emits it)."""
    try:
        return float(report[key])
    except (KeyError, TypeError, ValueError):
        return None


def guest_report(inst: Instance) -> dict[str, Any]:
    """The guest's own report merged over the workload's RESULT lines; {} when there is none."""
    out: dict[str, Any] = dict(getattr(inst, "results", {}) or {})
    with contextlib.suppress(Exception):  # a guest that cannot answer is not a failed measurement
        out.update(inst.guest_report() or {})
    return out


class ExitWatch:
    """Waits for the workload's exit in a thread, so the caller can read counters meanwhile.

    ``Instance.wait(timeout)`` is the contract's only exit signal, and a backend
    may stop the instance when that timeout expires (vm destroys the guest), so
    it is called once with the whole allowance, never as a short poll.  Join it
    after the instance was cleaned up: cleanup ends the workload, and the wait.
    """

    def __init__(self) -> None:
        self.done = threading.Event()
        self.status: int | None = None
        self.error: BaseException | None = None
        self._thread: threading.Thread | None = None

    def start(self, inst: Instance, timeout: float) -> ExitWatch:
        self._thread = threading.Thread(target=self._run, args=(inst, timeout),
                                        name=f"{inst.name}-wait", daemon=True)
        self._thread.start()
        return self

    def _run(self, inst: Instance, timeout: float) -> None:
        try:
            self.status = inst.wait(timeout)
        except Exception as e:  # reported through .error; the measurement decides
            self.error = e
        finally:
            self.done.set()

    def join(self, timeout: float = 10.0) -> None:
        if self._thread is not None:
            self._thread.join(timeout)
