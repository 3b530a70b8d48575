"""Scenario files (TOML): what to measure, on which backends, how often.

    [scenario]
    name = "default"
    backends = ['bare', 'container', 'vm']   # any registered backends (``runtimes.REGISTRY``)
    repetitions = 10          # defaults for every experiment
    warmups = 1
    timeout = 60              # seconds an instance may take to become ready / to exit

    [backend.vm]              # launch options per backend, as its declaration types them
    vcpus = 1
    memory_mib = 256

    [[experiment]]
    measurement = "startup"   # startup | memory | density | cpu_quota | mem_limit | pids_limit
    workloads = ["noop", "idle"]
    backends = ['bare', 'container']   # optional: a subset of scenario.backends
    repetitions = 20
    overrides = { 'vm@tcg' = { repetitions = 2 } }   # per backend, or backend@accelerator

    [[experiment]]
    measurement = "cpu_quota"
    seconds = 3
    grid = { quota = [0.25, 0.5], threads = [1, 2], period_ms = [100] }

    [workload.web]            # a workload made of an imported image (runtimes.image.workload)
    image = "isobench/pyhttp"
    ready = { http = "8000/" }

A ``[workload.NAME]`` table is of the kind its key names (``image``: the kinds are
``runtimes.workload_kinds``).  An experiment names such workloads beside catalog ones
(``workloads = ["web"]``);
a measurement with a catalog workload of its own takes them with its image grid
(``MeasurementInfo.images``: e.g. mem_limit's ``limit_mib`` alone).

Validation fails with one ``ScenarioError`` line naming the file, the key and
the problem; nothing is created before a scenario validated.
"""

from __future__ import annotations

import itertools
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import runtimes
from harness.case import Case
from harness.metric import MeasurementInfo
from runtimes import names as backend_names
from runtimes import workload_kinds
from runtimes.base import Limits
from runtimes.declaration import OptionError
from runtimes.userpaths import read_regular
from runtimes.workloads import CATALOG, AnyWorkload, Workload


class ScenarioError(ValueError):
    """A scenario file is malformed; str() is the one line shown to the user."""


_NUM = (int, float)
#: every experiment's keys; a measurement adds its own (``MeasurementInfo.options``)
EXPERIMENT_KEYS = {"measurement", "backends", "workloads", "workload", "params", "repetitions", "warmups",
                   "timeout", "grid", "seconds", "settle", "overrides"}
#: (``seconds`` is not: it is part of the workload, the same on every backend of a case)
OVERRIDABLE = {"repetitions", "warmups", "timeout", "skip"}
SCENARIO_KEYS = {"name", "description", "backends", "repetitions", "warmups", "timeout", "seed", "reference"}
TOP_KEYS = {"scenario", "backend", "experiment", "workload"}


@dataclass(frozen=True)
class Scenario:
    path: str
    name: str
    description: str
    backends: list[str]
    cases: list[Case]
    backend_options: dict[str, dict[str, Any]]
    text: str
    #: seeds the shuffled order of backends in each block (harness.schedule)
    seed: int = 0
    #: the in-run reference backend `isobench compare --normalise` divides durations by
    reference: str | None = None


def _err(path: str, key: str, problem: str) -> ScenarioError:
    return ScenarioError(f"{path}: {key}: {problem}")


def _number(path: str, key: str, value: Any, lo: float, hi: float = float("inf"),
            types: tuple[type, ...] = _NUM) -> Any:
    """``value`` if it is a number of ``types`` within [lo, hi]; else a ScenarioError naming ``key``."""
    if isinstance(value, bool) or not isinstance(value, types) or not isinstance(value, (int, float)):
        kind = "an integer" if types == (int,) else "a number"
        raise _err(path, key, f"must be {kind}, got {value!r}")
    if not math.isfinite(value):
        raise _err(path, key, f"must be a finite number, got {value!r}")
    if not lo <= value <= hi:
        raise _err(path, key, f"must be between {lo:g} and {hi:g}, got {value!r}")
    return value


def load(path: str | Path) -> Scenario:
    p = str(path)
    try:
        text = read_regular(path).decode("utf-8")
    except OSError as e:
        raise ScenarioError(f"{p}: cannot read: {e.strerror}") from e
    except UnicodeDecodeError as e:
        raise ScenarioError(f"{p}: not UTF-8 text (byte {e.start}: {e.object[e.start:e.start + 1]!r}); "
                            f"a scenario is a TOML file") from e
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(f"{p}: TOML syntax error: {e}") from e
    return parse(data, p, text)


def parse(data: Mapping[str, Any], p: str = "<scenario>", text: str = "") -> Scenario:
    for key in data:
        if key not in TOP_KEYS:
            raise _err(p, key, f"unknown key (expected one of: {', '.join(sorted(TOP_KEYS))})")
    head = data.get("scenario", {})
    if not isinstance(head, Mapping):
        raise _err(p, "scenario", "must be a table")
    for key in head:
        if key not in SCENARIO_KEYS:
            raise _err(p, f"scenario.{key}", "unknown key")
    backends = head.get("backends", [runtimes.reference()])
    if not isinstance(backends, list) or not backends:
        raise _err(p, "scenario.backends", "must be a non-empty list of backend names")
    for b in backends:
        if b not in backend_names():
            raise _err(p, "scenario.backends", f"unknown backend {b!r} (known: {', '.join(backend_names())})")
    defaults = {
        "repetitions": _number(p, "scenario.repetitions", head.get("repetitions", 5), 1, 100_000, (int,)),
        "warmups": _number(p, "scenario.warmups", head.get("warmups", 1), 0, 100_000, (int,)),
        "timeout": _number(p, "scenario.timeout", head.get("timeout", 60), 0.1, 86_400),
    }
    options = data.get("backend", {})
    if not isinstance(options, Mapping):
        raise _err(p, "backend", "must be a table of backend tables")
    for b, opts in options.items():
        if b not in backend_names():
            raise _err(p, f"backend.{b}", "unknown backend")
        if not isinstance(opts, Mapping):
            raise _err(p, f"backend.{b}", "must be a table")
        try:
            runtimes.declaration(b).check_options(opts)
        except OptionError as e:
            raise _err(p, f"backend.{b}.{e.key}", str(e)) from e
    images = _image_workloads(p, data.get("workload", {}))
    experiments = data.get("experiment", [])
    if not isinstance(experiments, list) or not experiments:
        raise _err(p, "experiment", "at least one [[experiment]] is needed")
    cases: list[Case] = []
    for i, exp in enumerate(experiments):
        cases += _expand(p, f"experiment[{i}]", exp, defaults, backends, images)
    reference = head.get("reference")
    if reference is not None and reference not in backends:
        raise _err(p, "scenario.reference", f"must be one of the scenario's backends, got {reference!r}")
    return Scenario(p, str(head.get("name", Path(p).stem)), str(head.get("description", "")),
                    list(backends), cases, {k: dict(v) for k, v in options.items()}, text,
                    _number(p, "scenario.seed", head.get("seed", 0), 0, 2**63, (int,)), reference)


def _image_workloads(p: str, raw: Any) -> dict[str, AnyWorkload]:
    """The ``[workload.NAME]`` tables, each loaded by its kind (an image's: resolved to the
    imported image now, one clear line when it is not there: nothing runs)."""
    if not isinstance(raw, Mapping):
        raise _err(p, "workload", "must be a table of [workload.NAME] tables")
    out = {}
    for name, table in raw.items():
        where = f"workload.{name}"
        if name in CATALOG:
            raise _err(p, where, f"{name!r} is a catalog workload: give the workload another name")
        if not isinstance(table, Mapping):
            raise _err(p, where, "must be a table")
        try:
            out[name] = workload_kinds.of(table).load(name, table)
        except workload_kinds.TableError as e:
            raise _err(p, f"{where}.{e.key}" if e.key else where, str(e)) from e
        except ValueError as e:  # the kind's own words (an ImageError among them)
            raise _err(p, where, str(e)) from e
    return out


def _expand(p: str, where: str, exp: Any, defaults: Mapping[str, Any], backends: list[str],
            images: Mapping[str, AnyWorkload]) -> list[Case]:
    if not isinstance(exp, Mapping):
        raise _err(p, where, "must be a table")
    # the measurements declare their workload, grid and keys; imported here, not at the top,
    # because cli.main imports this module for ScenarioError under the system Python (doctor)
    from harness.measure import catalogue

    infos = catalogue().measurements
    m = exp.get("measurement")
    info = infos.get(m) if isinstance(m, str) else None
    for key in exp:
        if key not in EXPERIMENT_KEYS and (info is None or key not in info.options):
            raise _err(p, f"{where}.{key}", "unknown key")
    if info is None:
        raise _err(p, f"{where}.measurement", f"unknown measurement {m!r} (known: {', '.join(infos)})")
    default_wl, grid_spec = info.workload, info.grid
    where = f"{where}({m})"
    names = exp.get("workloads", [exp["workload"]] if "workload" in exp else [default_wl] if default_wl else None)
    if not isinstance(names, list) or not names:
        raise _err(p, f"{where}.workloads", "must name at least one workload")
    for n in names:
        if n not in CATALOG and n not in images:
            raise _err(p, f"{where}.workloads", f"unknown workload {n!r} (known: {', '.join([*CATALOG, *images])})")
    if default_wl and any(n != default_wl and n not in images for n in names):
        raise _err(p, f"{where}.workloads", f"{m} runs the {default_wl!r} workload only (or image workloads)")
    if any(n in images for n in names):
        grid_spec = _image_grid(p, where, info, names, images)
    reps = _number(p, f"{where}.repetitions", exp.get("repetitions", defaults["repetitions"]), 1, 100_000, (int,))
    warm = _number(p, f"{where}.warmups", exp.get("warmups", defaults["warmups"]), 0, 100_000, (int,))
    timeout = _number(p, f"{where}.timeout", exp.get("timeout", defaults["timeout"]), 0.1, 86_400)
    seconds = _number(p, f"{where}.seconds", exp.get("seconds", 3.0), 0.1, 3600) if "seconds" in exp else None
    options = {k: _number(p, f"{where}.{k}", exp.get(k, o.default), o.minimum, o.maximum, o.types)
               for k, o in info.options.items()}
    settle = _number(p, f"{where}.settle", exp.get("settle", 1.0), 0, 600)
    overrides = _overrides(p, f"{where}.overrides", exp.get("overrides", {}), backends, info)
    only = exp.get("backends")
    if only is not None:
        if not isinstance(only, list) or not only:
            raise _err(p, f"{where}.backends", "must be a non-empty list of backend names")
        for b in only:
            if b not in backends:
                raise _err(p, f"{where}.backends", f"{b!r} is not among scenario.backends")
    imageless = [b for b in (only or backends) if not runtimes.declaration(b).images]
    if imageless and any(n in images for n in names):
        raise _err(p, f"{where}.backends", f"{', '.join(imageless)} runs no image workload: give the experiment "
                   f"a backends list without it")
    base_params = exp.get("params", {})
    if not isinstance(base_params, Mapping):
        raise _err(p, f"{where}.params", "must be a table of workload parameters")
    grid = exp.get("grid", {})
    if not isinstance(grid, Mapping):
        raise _err(p, f"{where}.grid", "must be a table of lists")
    for key, values in grid.items():
        if key not in grid_spec:
            allowed = ", ".join(grid_spec) or "none"
            raise _err(p, f"{where}.grid.{key}", f"unknown grid key (allowed for {m}: {allowed})")
        if not isinstance(values, list) or not values:
            raise _err(p, f"{where}.grid.{key}", "must be a non-empty list")
        spec = grid_spec[key]
        for v in values:
            _number(p, f"{where}.grid.{key}", v, spec.minimum, spec.maximum, spec.types)
    missing = [k for k, spec in grid_spec.items() if k not in grid and spec.required]
    if missing:
        raise _err(p, f"{where}.grid", f"{m} needs {', '.join(missing)}")
    keys = list(grid)
    cases = []
    for name in names:
        for combo in itertools.product(*(grid[k] for k in keys)) if keys else [()]:
            cell = dict(zip(keys, combo, strict=True))
            try:
                wl, limits = (images[name], _limits(info, cell)) if name in images else _bind(
                    info, name, cell, base_params, seconds)
            except ValueError as e:
                raise _err(p, where, str(e)) from e
            cases.append(Case(info.name, wl, limits, cell, reps, warm, float(timeout), settle_s=float(settle),
                              overrides=overrides, backends=tuple(only) if only else None, options=options))
    return cases


def _overrides(p: str, where: str, raw: Any, backends: list[str], info: MeasurementInfo) -> dict[str, dict[str, Any]]:
    own = {k: o for k, o in info.options.items() if o.overridable}
    allowed = OVERRIDABLE | set(own)
    if not isinstance(raw, Mapping):
        raise _err(p, where, "must be a table of backend tables")
    out = {}
    for key, o in raw.items():
        backend, _, accel = key.partition("@")
        if backend not in backend_names():
            raise _err(p, f"{where}.{key}", "unknown backend")
        # a guest's accelerator, or a platform the backend declares (gVisor's ptrace, kvm)
        known = ["kvm", "tcg", *(a for a in runtimes.declaration(backend).accel_labels if a not in ("kvm", "tcg"))]
        if accel and accel not in known:
            raise _err(p, f"{where}.{key}", f"unknown accelerator {accel!r} ({' or '.join(known)})")
        if not isinstance(o, Mapping):
            raise _err(p, f"{where}.{key}", "must be a table")
        for k, v in o.items():
            if k not in allowed:
                raise _err(p, f"{where}.{key}.{k}", f"cannot be overridden (allowed: {', '.join(sorted(allowed))})")
            if k == "skip":
                if not isinstance(v, bool):
                    raise _err(p, f"{where}.{key}.skip", "must be true or false")
            elif k in own:
                _number(p, f"{where}.{key}.{k}", v, own[k].minimum, own[k].maximum, own[k].types)
            else:
                _number(p, f"{where}.{key}.{k}", v, 0 if k == "warmups" else 1, 100_000,
                        (int,) if k != "timeout" else _NUM)
        out[key] = dict(o)
    return out


def _bind(info: MeasurementInfo, name: str, cell: Mapping[str, Any], base: Mapping[str, Any],
          seconds: float | None) -> tuple[Workload, Limits]:
    """Turn a grid cell into the workload to run (the measurement's ``workload_keys`` are its
    parameters) and the limits to apply."""
    params = dict(base)
    if seconds is not None and "seconds" in CATALOG[name].params:
        params["seconds"] = seconds
    params.update({k: cell[k] for k in info.workload_keys})
    return Workload(name, params), _limits(info, cell)


def _limits(info: MeasurementInfo, cell: Mapping[str, Any]) -> Limits:
    """The limits a grid cell asks for, as its measurement declares them."""
    return info.limits(cell) if info.limits is not None else Limits()


def _image_grid(p: str, where: str, info: MeasurementInfo, names: list[str],
                images: Mapping[str, AnyWorkload]) -> Mapping[str, Any]:
    """The grid keys of an experiment with image workloads (the measurement's image grid)."""
    spec = info.image_grid()
    if spec is None:
        raise _err(p, f"{where}.workloads", f"{info.name} runs no image workload")
    if any(n not in images for n in names) and dict(spec) != dict(info.grid):
        raise _err(p, f"{where}.workloads", f"{info.name} takes other grid keys with image workloads "
                   f"({', '.join(spec) or 'none'}): give them an experiment of their own")
    return spec
