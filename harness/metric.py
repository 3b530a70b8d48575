"""The metric registry and the measurement declarations: each declared once, beside the
measurement that produces them.

A :class:`Metric` says what a row's number is: its unit, which way is better,
the measurement (family) it belongs to, whether it is summarised or a
per-sample point, and whether it heads the terminal summary or earns a peer
ratio.  A :class:`MeasurementInfo` is everything the harness knows of one
measurement: what a scenario may ask of it (its workload, grid keys, extra
keys), how a grid cell becomes workload parameters and limits, how the
report shows it (section title, charts, findings, headline figure) and how
``isobench validate`` gates it.  Scenario, runner, summary, report, compare and
validate read these; none of them names a measurement.

The measurement modules (``harness.measure.*``, ``harness.floor``) fill the
registry when imported; ``harness.measure`` imports all of them, so consumers
ask ``harness.measure.catalogue()``.  Code the report or validate runs for one
measurement (its charts, findings, baseline bounds, self-test mutations) is
named by a ``"module:function"`` reference and imported only when used, so
declaring a measurement imports neither matplotlib nor the report.

This module imports nothing of the harness: everything may import it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:  # pragma: no cover
    from runtimes.base import Limits

#: which way is better: smaller, larger, closer to 1, or no direction (set by the case)
LOWER, HIGHER, ONE, NONE = "lower", "higher", "one", "none"
DIRECTIONS = (LOWER, HIGHER, ONE, NONE)
#: metrics not declared (rows of an older or newer isobench) are judged by their unit
UNIT_DIRECTIONS = {"ms": LOWER, "MiB": LOWER}
#: the smallest absolute change a unit's figures can tell apart, where a metric declares none: memory
#: moves by a few pages between two runs of one commit (a stack page, an allocator arena: 30 KiB
#: between the quiet A/A runs in docs/runs), so a -0.01 -> -0.04 MiB overhead is no "-300 %" change
UNIT_RESOLUTION = {"MiB": 1 / 16, "MiB/instance": 1 / 16}
#: the resolution of the counter a unit's values are read from, where a metric declares none: memory
#: from /proc's and cgroup files' kB fields.  An interval of a median is widened by half of it (a
#: median read in ticks is known to half a tick at best).  Durations come from CLOCK_MONOTONIC in
#: ns, a millionth of their unit and far below any spread a launch shows: no widening
UNIT_TICK = {"MiB": 1 / 1024}


@dataclass(frozen=True)
class Metric:
    name: str  # the exact name rows carry, or a prefix (``phase_``) when ``prefix`` is set
    unit: str
    better: str
    family: str  # the measurement that produces it
    #: False for points of a curve (density's mem_available per instance count), which are
    #: shown as they are; True for the values a summary (median, CI) is made of
    summarised: bool = True
    headline: bool = False  # one line of the terminal summary at the end of ``isobench run``
    peer: bool = False  # worth a ratio peer/reference in the report
    prefix: bool = False
    description: str = ""
    #: the smallest absolute change (in ``unit``) that means something; None: the unit's default
    resolution: float | None = None
    #: the resolution of the timer or counter the value is read from (in ``unit``); None: the unit's default
    tick: float | None = None

    def __post_init__(self) -> None:
        if self.better not in DIRECTIONS:
            raise ValueError(f"metric {self.name}: better must be one of {DIRECTIONS}")

    def matches(self, name: str) -> bool:
        return name.startswith(self.name) if self.prefix else name == self.name


@dataclass(frozen=True)
class GridKey:
    """One key of a measurement's ``grid``: its type and bounds; optional keys have a default."""

    types: tuple[type, ...]
    minimum: float
    maximum: float
    required: bool = True


@dataclass(frozen=True)
class Option:
    """An experiment key of one measurement only (density's ``instances``): the scenario checks it
    like a grid value and hands it over in ``Case.options``."""

    types: tuple[type, ...]
    minimum: float
    maximum: float
    default: Any
    overridable: bool = False  # may differ per backend (``overrides = { vm = { instances = 4 } }``)


@dataclass(frozen=True)
class Headline:
    """A measurement's figure at the top of a report: one metric of its first workload present,
    each backend's median and its ratio to the reference backend (findings, headline chart, card)."""

    metric: str
    workloads: tuple[str, ...]  # in order of preference
    what: str  # what the number is, in words ("launch → ready")
    panel: str  # the headline chart's panel title
    #: a findings paragraph of its own ("Startup — launch → ready …"); False where one of the
    #: measurement's ``findings`` states it already
    finding: bool = True
    names_workload: bool = False  # that paragraph's title names the workload


#: code of the report or of validate for one measurement: ``"module:function"``, imported when
#: used (``runtimes.declaration.resolve``), or the function itself
Ref = str | Callable[..., Any]


@dataclass(frozen=True)
class MeasurementInfo:
    """One measurement, declared once (``@measurement(INFO)`` on its function)."""

    name: str
    title: str = ""  # its report section; "" reads "Other: <name>"
    workload: str | None = None  # the only workload it runs; None: any workload
    grid: Mapping[str, GridKey] = field(default_factory=dict)
    options: Mapping[str, Option] = field(default_factory=dict)  # its own experiment keys
    #: its cases are usually measured once each (a grid, or one long sample): "too few
    #: samples" is no news, and the summary shows the range across the grid
    single_shot: bool = False
    #: the grid it takes with an image workload (``[workload.NAME]``) in place of ``workload``;
    #: None: it runs no image workload (a measurement of any workload takes images with ``grid``)
    images: Mapping[str, GridKey] | None = None
    # -- how a grid cell binds: its ``workload_keys`` are the workload's parameters of the same
    # name (cpu_quota's ``threads``), and ``limits`` makes the limits it asks for (None: none);
    # an image workload takes the limits alone
    workload_keys: tuple[str, ...] = ()
    limits: Callable[[Mapping[str, Any]], Limits] | None = None
    #: its figures are launch timings: those timed inside an emulated (TCG) matrix guest, whose
    #: clock runs under emulation, stay out of its charts (its tables show them, labelled)
    timed: bool = False
    # -- the report: each a "module:function" taking (ReportData, measurement name)
    charts: tuple[Ref, ...] = ()  # -> Chart | None, in the order of its section
    findings: tuple[Ref, ...] = ()  # -> Finding | None; findings of one title merge into one
    headline: Headline | None = None
    # -- isobench validate
    gated: bool = False  # its cases are checked against the baseline's bounds
    #: (validate Case, metric, values, warnings) -> bounds, for ``--update-baseline``
    bounds: Ref | None = None
    #: ``--self-test`` mutations: name -> (validate Case, cores) -> its mutated values | None
    mutations: Mapping[str, Ref] = field(default_factory=dict)

    def image_grid(self) -> Mapping[str, GridKey] | None:
        """The grid keys an image workload may use here; None when it takes none."""
        return self.grid if self.workload is None else self.images

    @property
    def ranged(self) -> bool:
        """The terminal summary shows median [min–max] across the grid's cells."""
        return bool(self.grid)

    @property
    def section(self) -> str:
        return self.title or f"Other: {self.name}"


Fn = TypeVar("Fn", bound=Callable[..., Any])


class Catalogue:
    """Every declared metric and measurement, in declaration order."""

    def __init__(self) -> None:
        self.metrics: dict[str, Metric] = {}
        self.measurements: dict[str, MeasurementInfo] = {}
        self.functions: dict[str, Callable[..., Any]] = {}

    # -- declaring ---------------------------------------------------------------------
    def declare(self, *metrics: Metric) -> tuple[Metric, ...]:
        for m in metrics:
            if m.name in self.metrics and self.metrics[m.name] != m:
                raise ValueError(f"metric {m.name} declared twice, differently")
            self.metrics[m.name] = m
        return metrics

    def measurement(self, info: MeasurementInfo) -> Callable[[Fn], Fn]:
        """Decorator: register ``fn`` as the measurement ``info.name``."""

        def register(fn: Fn) -> Fn:
            self.register(info, fn)
            return fn

        return register

    def register(self, info: MeasurementInfo, fn: Callable[..., Any], *metrics: Metric) -> Callable[[], None]:
        """Add a measurement (and its metrics) at run time; returns what removes them again."""
        if info.name in self.measurements:
            raise ValueError(f"measurement {info.name} is already registered")
        self.declare(*metrics)
        self.measurements[info.name] = info
        self.functions[info.name] = fn

        def unregister() -> None:
            self.measurements.pop(info.name, None)
            self.functions.pop(info.name, None)
            for m in metrics:
                self.metrics.pop(m.name, None)

        return unregister

    # -- asking ------------------------------------------------------------------------
    def get(self, name: str) -> Metric | None:
        """The declaration of metric ``name`` (an exact name first, then a prefix family)."""
        if name in self.metrics and not self.metrics[name].prefix:
            return self.metrics[name]
        return next((m for m in self.metrics.values() if m.prefix and m.matches(name)), None)

    def unit(self, name: str) -> str:
        m = self.get(name)
        if m is None:
            raise KeyError(f"metric {name!r} is not declared (see harness.measure)")
        return m.unit

    def direction(self, name: str, unit: str | None = None) -> str:
        m = self.get(name)
        return m.better if m is not None else UNIT_DIRECTIONS.get(unit or "", NONE)

    def resolution(self, name: str, unit: str | None = None) -> float:
        """The smallest absolute change of ``name`` that compare may call a change (0: any)."""
        m = self.get(name)
        if m is not None and m.resolution is not None:
            return m.resolution
        return UNIT_RESOLUTION.get(unit or (m.unit if m else ""), 0.0)

    def tick(self, name: str, unit: str | None = None) -> float:
        """The resolution of the timer or counter ``name`` is read from (0: unknown, continuous)."""
        m = self.get(name)
        if m is not None and m.tick is not None:
            return m.tick
        return UNIT_TICK.get(unit or (m.unit if m else ""), 0.0)

    def headline(self) -> list[Metric]:
        """The terminal summary's metrics, in declaration order."""
        return [m for m in self.metrics.values() if m.headline]

    def is_peer_metric(self, name: str) -> bool:
        m = self.get(name)
        return m is not None and m.peer

    def info(self, measurement: str) -> MeasurementInfo | None:
        return self.measurements.get(measurement)

    def gated(self) -> list[str]:
        """The measurements ``isobench validate`` checks, in declaration order."""
        return [m.name for m in self.measurements.values() if m.gated]

    def headlines(self) -> list[tuple[str, Headline]]:
        """(measurement, its headline figure), in declaration order."""
        return [(m.name, m.headline) for m in self.measurements.values() if m.headline is not None]


#: the one registry, filled by the measurement modules as they are imported
CATALOGUE = Catalogue()
declare = CATALOGUE.declare
measurement = CATALOGUE.measurement
