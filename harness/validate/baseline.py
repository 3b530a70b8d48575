"""The baseline file: ``[baseline]`` and a list of ``[[bound]]`` tables (see ``harness.validate``).

Read with tomllib, written with tomli-w; every file written is read back
through ``parse_baseline`` first, so a baseline the gate could not load is never
left behind.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from harness.stats.numbers import EXACT, fmt
from harness.validate.expr import BaselineError, Expr
from runtimes.userpaths import read_regular

STATS = ("median", "mean", "min", "max", "all")
BOUND_KEYS = {"backend", "measurement", "metric", "params", "when", "require", "stat", "min", "max", "equals",
              "optional", "why", "exception"}
BASELINE_KEYS = {"description", "optional_backends", "derived_from"}


@dataclass(frozen=True)
class Bound:
    index: int
    backend: str
    measurement: str
    metric: str
    params: Mapping[str, float] = field(default_factory=dict)
    when: Expr | None = None
    require: Expr | None = None
    stat: str = "median"
    min: float | Expr | None = None
    max: float | Expr | None = None
    optional: bool = False
    why: str = ""
    #: a known, reasoned departure from the general bound for these cases (shown when it applies)
    exception: bool = False

    def describe(self) -> str:
        bits = [f"{self.backend} {self.measurement} {self.metric}"]
        if self.params:
            bits.append(" ".join(f"{k}={fmt(v, EXACT)}" for k, v in self.params.items()))
        if self.when:
            bits.append(f"when {self.when.text}")
        return " ".join(bits)


@dataclass(frozen=True)
class Baseline:
    path: str
    bounds: list[Bound]
    optional_backends: frozenset[str] = frozenset()
    description: str = ""


def _bound_value(v: Any, where: str) -> float | Expr | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        raise BaselineError(f"{where}: must be a number or an expression over the params, got {v!r}")
    return Expr.parse(v, where) if isinstance(v, str) else float(v)


def load_baseline(path: Path | str) -> Baseline:
    p = str(path)
    try:
        data = tomllib.loads(read_regular(path).decode())
    except OSError as e:
        raise BaselineError(f"{p}: cannot read: {e.strerror}") from e
    except tomllib.TOMLDecodeError as e:
        raise BaselineError(f"{p}: TOML syntax error: {e}") from e
    return parse_baseline(data, p)


def parse_baseline(data: Mapping[str, Any], p: str = "<baseline>") -> Baseline:
    for key in data:
        if key not in ("baseline", "bound"):
            raise BaselineError(f"{p}: {key}: unknown key (expected [baseline] and [[bound]])")
    head = data.get("baseline", {})
    if not isinstance(head, Mapping):
        raise BaselineError(f"{p}: baseline: must be a table")
    for key in head:
        if key not in BASELINE_KEYS:
            raise BaselineError(f"{p}: baseline.{key}: unknown key")
    optional = head.get("optional_backends", [])
    if not isinstance(optional, list) or not all(isinstance(b, str) for b in optional):
        raise BaselineError(f"{p}: baseline.optional_backends: must be a list of backend names")
    raw = data.get("bound", [])
    if not isinstance(raw, list) or not raw:
        raise BaselineError(f"{p}: bound: at least one [[bound]] is needed")
    bounds = [_parse_bound(b, i, f"{p}: bound[{i}]") for i, b in enumerate(raw)]
    return Baseline(p, bounds, frozenset(optional), str(head.get("description", "")))


def _parse_bound(b: Any, i: int, where: str) -> Bound:
    if not isinstance(b, Mapping):
        raise BaselineError(f"{where}: must be a table")
    for key in b:
        if key not in BOUND_KEYS:
            raise BaselineError(f"{where}.{key}: unknown key (allowed: {', '.join(sorted(BOUND_KEYS))})")
    for key in ("measurement", "metric"):
        if not isinstance(b.get(key), str) or not b[key]:
            raise BaselineError(f"{where}.{key}: required (a name)")
    backend = b.get("backend", "*")
    if not isinstance(backend, str) or not backend:
        raise BaselineError(f"{where}.backend: must be a backend name or \"*\"")
    stat = b.get("stat", "median")
    if stat not in STATS:
        raise BaselineError(f"{where}.stat: must be one of {', '.join(STATS)}, got {stat!r}")
    params = b.get("params", {})
    if not isinstance(params, Mapping) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in params.values()):
        raise BaselineError(f"{where}.params: must be a table of numbers (e.g. {{ threads = 1 }})")
    if "equals" in b and ("min" in b or "max" in b):
        raise BaselineError(f"{where}: equals cannot be combined with min/max")
    lo = _bound_value(b.get("equals", b.get("min")), f"{where}.{'equals' if 'equals' in b else 'min'}")
    hi = _bound_value(b.get("equals", b.get("max")), f"{where}.{'equals' if 'equals' in b else 'max'}")
    if lo is None and hi is None:
        raise BaselineError(f"{where}: needs min, max or equals")
    if isinstance(lo, float) and isinstance(hi, float) and lo > hi:
        raise BaselineError(f"{where}: min {lo:g} is above max {hi:g}")
    for key in ("when", "require"):
        if key in b and not isinstance(b[key], str):
            raise BaselineError(f"{where}.{key}: must be a string (an expression)")
    when = Expr.parse(b["when"], f"{where}.when") if "when" in b else None
    require = Expr.parse(b["require"], f"{where}.require") if "require" in b else None
    for key in ("optional", "exception"):
        if not isinstance(b.get(key, False), bool):
            raise BaselineError(f"{where}.{key}: must be true or false")
    if b.get("exception") and not b.get("why"):
        raise BaselineError(f"{where}: an exception needs its reason (why = ...)")
    _check_declared(where, backend, b["measurement"], b["metric"])
    return Bound(i, backend, b["measurement"], b["metric"], {k: float(v) for k, v in params.items()}, when,
                 require, stat, lo, hi, b.get("optional", False), str(b.get("why", "")), b.get("exception", False))


def _check_declared(where: str, backend: str, measurement: str, metric: str) -> None:
    """The names a bound uses exist: a registered backend, a declared measurement and metric."""
    import runtimes
    from harness.measure import catalogue

    cat = catalogue()
    if backend != "*" and not runtimes.known(backend):
        raise BaselineError(f"{where}.backend: unknown backend {backend!r} (known: {', '.join(runtimes.names())})")
    if cat.info(measurement) is None:
        raise BaselineError(f"{where}.measurement: unknown measurement {measurement!r} "
                            f"(known: {', '.join(cat.measurements)})")
    declared = cat.get(metric)
    if declared is None or declared.family != measurement:
        known = ", ".join(m.name for m in cat.metrics.values() if m.family == measurement and not m.prefix)
        raise BaselineError(f"{where}.metric: {measurement} has no metric {metric!r} (known: {known})")


def write_baseline(path: Path, bounds: list[dict[str, Any]], head: Mapping[str, Any], comment: str) -> None:
    """Write ``bounds`` under a ``[baseline]`` table ``head``, ``comment`` lines on top; atomically."""
    doc = {"baseline": {k: v for k, v in head.items() if v not in (None, "", [])},
           "bound": [{k: v for k, v in b.items() if v != {}} for b in bounds]}
    text = "".join(f"# {line}\n" if line else "#\n" for line in comment.splitlines()) + "\n" + tomli_w.dumps(doc)
    parse_baseline(tomllib.loads(text), str(path))  # never write a baseline we could not read back
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)

