"""The measurements, each defined once and applied identically to every backend.

A measurement is a function ``(backend, case, ctx, repetition, warmup) -> list[Sample]``
registered with ``@measurement(MeasurementInfo(...))`` (``harness.metric``) under
the name scenarios use, next to the ``declare(Metric(...))`` of every metric it
produces.  Its ``MeasurementInfo`` is all the rest of the harness knows of it:
the scenario keys and how a grid cell binds a workload and limits, its report
section (charts, findings, headline figure) and how validate gates it.  It
launches what it needs through the backend interface only (``runtimes.base``),
so any new backend gets every measurement for free.  It raises on failure; the
runner turns the exception into a ``failed`` sample and goes on.

Adding a measurement is one module here and one line below (or, at run time,
``catalogue().register(info, function, *metrics)``, as ``tests/toy_measurement.py``
does).  Importing this package imports every measurement module, in report
order, so ``catalogue()`` knows every metric and measurement.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from harness.metric import CATALOGUE, Catalogue

# importing a measurement module registers it and declares its metrics: in report order
# isort: off
from harness.measure import startup, memory, density, cpu, enforcement, throughput  # noqa: F401
from harness import floor  # noqa: F401 - declares the floor_* metrics
# isort: on

if TYPE_CHECKING:  # pragma: no cover
    from harness.case import Case
    from harness.measure.context import Context
    from harness.results import Sample
    from runtimes.base import Backend

    Measurement = Callable[[Backend, Case, Context, int, bool], list[Sample]]

#: measurement name -> function
MEASUREMENTS: dict[str, Callable[..., list[Sample]]] = CATALOGUE.functions


def catalogue() -> Catalogue:
    """Every declared metric and measurement (all measurement modules are imported)."""
    return CATALOGUE
