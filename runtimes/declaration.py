"""What a backend declares about itself, in one place, without importing its code.

A :class:`Declaration` is plain data (standard library only): the backend's
name, colour and label, its typed scenario options, its capabilities (is it a
guest, which backend it is a peer of, how it enforces each limit, whether it is
the memory reference or the floor's target), and *where* its code, leftover
sweep and doctor checks live, as ``"module:attribute"`` strings resolved only
when called.  So the registry (``runtimes.declarations()``) can be read by
``isobench doctor --fix`` under the system Python, and on a host without
libvirt every other backend still runs.

Generic code (harness/) asks these declarations; it never names a backend.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:  # pragma: no cover
    from runtimes.base import Backend

#: the limits a backend may enforce, and the words for the default way (a cgroup)
LIMIT_KINDS = ("cpu", "memory", "pids")
CGROUP_ENFORCEMENT: Mapping[str, str] = {
    "cpu": "cgroup cpu quota",
    "memory": "cgroup memory limit",
    "pids": "cgroup pids limit",
}


class OptionError(ValueError):
    """A backend option is wrong; ``key`` names it, ``str()`` says what is wrong."""

    def __init__(self, key: str, problem: str):
        super().__init__(problem)
        self.key = key


@dataclass(frozen=True)
class Option:
    """One typed ``[backend.NAME]`` scenario key."""

    name: str
    type: type  # int, float, str or bool
    default: Any
    minimum: float | None = None
    maximum: float | None = None
    help: str = ""
    #: the ``LaunchSpec`` field this option fills (e.g. ``vcpus``); None: it goes to ``spec.extra``
    spec_field: str | None = None
    #: the only values it may take (empty: any of its type)
    choices: tuple[Any, ...] = ()
    #: ``"module:function"``: value -> why it cannot serve (None: it can), asked when a scenario is
    #: read, so a value that names a file (a seccomp profile) is refused before anything is created
    verify: str | None = None

    def check(self, value: Any) -> Any:
        """The value if it is valid, else an ``OptionError`` naming this option."""
        if self.type is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if isinstance(value, bool) is not (self.type is bool) or not isinstance(value, self.type):
            kind = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}[self.type]
            raise OptionError(self.name, f"must be {kind}, got {value!r}")
        lo = self.minimum if self.minimum is not None else float("-inf")
        hi = self.maximum if self.maximum is not None else float("inf")
        if isinstance(value, float) and not math.isfinite(value):
            raise OptionError(self.name, f"must be a finite number, got {value!r}")
        if isinstance(value, (int, float)) and not lo <= value <= hi:
            raise OptionError(self.name, f"must be between {lo:g} and {hi:g}, got {value!r}")
        if self.choices and value not in self.choices:
            raise OptionError(self.name, f"must be one of {', '.join(map(str, self.choices))}, got {value!r}")
        if self.verify is not None and (problem := resolve(self.verify)(value)) is not None:
            raise OptionError(self.name, str(problem))
        return value


@dataclass(frozen=True)
class Check:
    """One line of ``isobench doctor``: a capability, whether it is there, and the fix."""

    name: str
    ok: bool
    detail: str
    fix: str | None = None
    essential: bool = True

    def line(self) -> str:
        mark = "ok  " if self.ok else ("FAIL" if self.essential else "warn")
        text = f"[{mark}] {self.name:<14} {self.detail}"
        return text + (f"  -> fix: {self.fix}" if not self.ok and self.fix else "")


def resolve(ref: str | Callable[..., Any]) -> Any:
    """``"package.module:attribute"`` -> the attribute (imported now); a callable as is."""
    if not isinstance(ref, str):
        return ref
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


Named = TypeVar("Named")


def resolve_named(ref: str, cls: type[Named], name: str, what: str) -> Named:
    """The ``cls`` called ``name`` that ``ref`` points to (a registry's entry); TypeError when it
    is not one: a registry line pointing at the wrong thing is a bug, not bad input."""
    found = resolve(ref)
    if not isinstance(found, cls) or getattr(found, "name", None) != name:
        raise TypeError(f"{ref} is not the {what} {name!r}")
    return found


@dataclass(frozen=True)
class Declaration:
    """Everything generic code needs to know about one backend."""

    name: str  # what users type (``--backends``) and rows carry
    #: the Backend class (or factory), as ``"module:attribute"`` so that reading this imports nothing
    factory: str | Callable[..., Backend]
    label: str  # what runs the workload, in a few words (help text, docs)
    colour: str  # its colour in every chart (hex)
    #: what a sentence calls it ("relative to bare metal"); "": its name
    in_words: str = ""
    options: tuple[Option, ...] = ()
    #: keyword arguments the factory is called with (one class may serve several backends)
    factory_args: Mapping[str, Any] = field(default_factory=dict)
    #: it boots its own kernel: honours ``vcpus``, its RAM is its memory limit, reports from inside
    guest: bool = False
    #: the backend this one is a reference peer of (report: median(peer) / median(reference))
    peer_of: str | None = None
    #: the reference backend, the workload as a plain host process: what every other backend is
    #: measured against — a scenario's default backend, the base the memory overhead subtracts, the
    #: report's ratios ("× bare"), compare's yardstick for host drift (exactly one declares it)
    reference: bool = False
    #: rows of the floor (``floor.json``) are attached to this backend
    floor_target: bool = False
    #: compared with the floor when the floor's own backend has no startup rows
    floor_compared: bool = False
    #: limit kind -> how this backend enforces it (see ``LIMIT_KINDS``)
    enforcement: Mapping[str, str] = field(default_factory=lambda: dict(CGROUP_ENFORCEMENT))
    #: ``"module:function"``: ``(run_id | None) -> list[str]`` removes what a crashed run left
    sweep: str | None = None
    #: ``"module:function"``: ``(probe: bool) -> list[Check]``, this backend's lines of ``doctor``
    doctor: str | None = None
    #: ``"module:function"``: ``() -> list[str]``, what ``doctor --fix`` does for it (configure, start
    #: daemons) after the packages are installed; returns the actions taken
    host_setup: str | None = None
    #: host metadata key -> command printing the version of a tool it runs (``qemu-system-x86_64
    #: --version``), recorded in every run's manifest under ``host``
    tools: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: a peer a run can do without: where it cannot run (not installed, cannot start) the run
    #: skips it with the reason, as ``--skip-unavailable`` does, instead of refusing to start
    optional: bool = False
    #: accelerator or platform the rows record (``accel``) -> the words every figure of this
    #: backend's series carries, as "TCG, emulated" does for a guest (``harness.stats.series.label``)
    accel_labels: Mapping[str, str] = field(default_factory=dict)
    #: Debian packages it needs beyond the project's own (``harness.doctor.SYSTEM_PACKAGES``), each
    #: with the file that says it is installed: ``doctor --fix`` installs them
    packages: Mapping[str, str] = field(default_factory=dict)
    #: how it runs an image, when that is not what its name says: every label of its image
    #: workloads' rows carries it (``bare``: "chroot")
    image_label: str | None = None
    #: it runs image workloads (``[workload.NAME]``); False: a launch of one is a clear error
    images: bool = True

    def __post_init__(self) -> None:
        unknown = set(self.enforcement) - set(LIMIT_KINDS)
        if unknown:
            raise ValueError(f"backend {self.name}: unknown limit kind(s) {sorted(unknown)}")

    @property
    def words(self) -> str:
        return self.in_words or self.name

    def create(self, **kwargs: Any) -> Backend:
        backend: Backend = resolve(self.factory)(**{**self.factory_args, **kwargs})
        # one class may serve several declarations (container:fork, container:unconfined): rows
        # carry the declaration's name, not the class's
        backend.name = self.name
        return backend

    def enforcement_note(self, kind: str) -> str | None:
        """How this backend enforces ``kind`` when that is not the default cgroup way (else None)."""
        words = self.enforcement.get(kind)
        return words if words and words != CGROUP_ENFORCEMENT.get(kind) else None

    def option(self, name: str) -> Option | None:
        return next((o for o in self.options if o.name == name), None)

    def check_options(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        """Every declared option, validated, with defaults for the missing; unknown keys raise."""
        out: dict[str, Any] = {}
        for key, value in raw.items():
            opt = self.option(key)
            if opt is None:
                known = ", ".join(o.name for o in self.options) or "none"
                raise OptionError(key, f"unknown option of backend {self.name} (known: {known})")
            out[key] = opt.check(value)
        return {o.name: out.get(o.name, o.default) for o in self.options}

    def split_options(self, options: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """(LaunchSpec fields, ``spec.extra``) from checked options."""
        fields: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for key, value in options.items():
            opt = self.option(key)
            if opt is not None and opt.spec_field:
                fields[opt.spec_field] = value
            else:
                extra[key] = value
        return fields, extra
