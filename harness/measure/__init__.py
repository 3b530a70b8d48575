"""The measurements, each defined once and applied identically to every backend.

A measurement is a function ``(backend, case, ctx, repetition, warmup) -> list[Sample]``
registered in ``MEASUREMENTS`` under the name scenarios use.  It launches what
it needs through the backend interface only (``runtimes.base``), so any new
backend gets every measurement for free.  It raises on failure; the runner
turns the exception into a ``failed`` sample and goes on.
"""

from __future__ import annotations

from collections.abc import Callable

from harness.measure.context import Context
from harness.results import Sample
from harness.scenario import Case
from runtimes.base import Backend

Measurement = Callable[[Backend, Case, Context, int, bool], list[Sample]]

MEASUREMENTS: dict[str, Measurement] = {}


def measurement(name: str) -> Callable[[Measurement], Measurement]:
    def register(fn: Measurement) -> Measurement:
        MEASUREMENTS[name] = fn
        return fn

    return register


def _load() -> None:
    # importing the modules registers their measurements
    from harness.measure import cpu, density, enforcement, memory, startup  # noqa: F401


_load()
