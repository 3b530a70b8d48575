"""``isobench validate RUN_DIR --baseline FILE``: the enforcement regression gate.

A baseline is a TOML list of bounds, each keyed by backend (``"*"`` = every
backend of the run), measurement and case params::

    [baseline]
    optional_backends = ['vm']     # no rows for these is "skipped", not "missing"

    [[bound]]
    backend = "*"                  # a named backend's bound replaces "*" for that backend
    measurement = "cpu_quota"
    metric = "cpu_ratio"
    params = { threads = 1 }       # optional: cases whose params include these values
    when = "quota < threads"       # optional: a condition on the case params
    require = "nr_throttled >= 0.8 * nr_periods"   # optional: a precondition on the case's
                                   # measured medians (and params); false = skipped, with why
    stat = "median"                # median (default) | mean | min | max | all (every sample)
    min = 0.95                     # numbers, or expressions over the params: max = "limit"
    max = 1.05                     # equals = 1 is short for min = max = 1
    optional = false               # true: matching no case is "skipped", not "missing"
    why = "CFS bandwidth control delivers the quota within 5 %"

Every (bound, backend, case) pair is one check and one JUnit testcase.  A
bound that matches no case of a backend of the run is **missing**, which fails
like a violation (the gate must not pass because a measurement did not run).
Failed repetitions in a checked case are a failure of their own.  A case
whose ``require`` is false is **skipped** with the values that made it so:
e.g. a CPU quota cannot be judged on under-delivery when a busy host never
let the workload reach it (the cgroup was rarely throttled).

``--update-baseline`` writes a baseline derived from the run instead (see
``derive``): per backend and case, bands around what was observed.
"""

from __future__ import annotations

import argparse
import ast
import math
import operator
import sys
import tomllib
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

HELP = "check a run's enforcement results against a baseline of bounds (a CI gate; JUnit output)"

STATS = ("median", "mean", "min", "max", "all")
BOUND_KEYS = {"backend", "measurement", "metric", "params", "when", "require", "stat", "min", "max", "equals",
              "optional", "why"}
BASELINE_KEYS = {"description", "optional_backends", "derived_from"}
ENFORCEMENT = ("cpu_quota", "mem_limit", "pids_limit")


class BaselineError(ValueError):
    """The baseline file is malformed; str() is the one line shown."""


# -- expressions over case params ---------------------------------------------------
_BINOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}
_CMPOPS: dict[type, Callable[[Any, Any], bool]] = {
    ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
    ast.Eq: operator.eq, ast.NotEq: operator.ne}


@dataclass(frozen=True)
class Expr:
    """A small arithmetic/comparison expression over param names (``"mib > limit_mib"``, ``"limit"``).

    Parsed with ``ast`` and evaluated node by node: names, numbers, + - * /,
    comparisons, and/or/not; nothing else is accepted.
    """

    text: str
    tree: ast.Expression

    @classmethod
    def parse(cls, text: str, where: str) -> Expr:
        try:
            tree = ast.parse(text, mode="eval")
        except SyntaxError as e:
            raise BaselineError(f"{where}: cannot parse {text!r}: {e.msg}") from e
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Expression, ast.Name, ast.Constant, ast.BinOp, ast.UnaryOp, ast.Compare,
                                     ast.BoolOp, ast.Load, ast.And, ast.Or, ast.Not, ast.USub, *_BINOPS,
                                     *_CMPOPS)):
                raise BaselineError(f"{where}: {text!r}: only param names, numbers, + - * /, comparisons "
                                    f"and and/or/not are allowed")
            if isinstance(node, ast.Constant) and (isinstance(node.value, bool)
                                                   or not isinstance(node.value, (int, float))):
                raise BaselineError(f"{where}: {text!r}: only numeric constants are allowed")
        return cls(text, tree)

    def names(self) -> set[str]:
        return {n.id for n in ast.walk(self.tree) if isinstance(n, ast.Name)}

    def __call__(self, env: Mapping[str, float]) -> Any:
        return self._eval(self.tree.body, env)

    def _eval(self, node: ast.AST, env: Mapping[str, float]) -> Any:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            if node.id not in env:
                raise KeyError(node.id)
            return env[node.id]
        if isinstance(node, ast.BinOp):
            return _BINOPS[type(node.op)](self._eval(node.left, env), self._eval(node.right, env))
        if isinstance(node, ast.UnaryOp):
            v = self._eval(node.operand, env)
            return -v if isinstance(node.op, ast.USub) else not v
        if isinstance(node, ast.BoolOp):
            vals = (self._eval(v, env) for v in node.values)
            return all(vals) if isinstance(node.op, ast.And) else any(vals)
        if isinstance(node, ast.Compare):
            left = self._eval(node.left, env)
            for op, comp in zip(node.ops, node.comparators, strict=True):
                right = self._eval(comp, env)
                if not _CMPOPS[type(op)](left, right):
                    return False
                left = right
            return True
        raise TypeError(type(node).__name__)  # unreachable: parse() rejected it


# -- the baseline ------------------------------------------------------------------------
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

    def describe(self) -> str:
        bits = [f"{self.backend} {self.measurement} {self.metric}"]
        if self.params:
            bits.append(" ".join(f"{k}={_num(v)}" for k, v in self.params.items()))
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
        data = tomllib.loads(Path(path).read_text())
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
    optional = b.get("optional", False)
    if not isinstance(optional, bool):
        raise BaselineError(f"{where}.optional: must be true or false")
    _check_declared(where, backend, b["measurement"], b["metric"])
    return Bound(i, backend, b["measurement"], b["metric"], {k: float(v) for k, v in params.items()}, when,
                 require, stat, lo, hi, optional, str(b.get("why", "")))


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


# -- checking ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    """One backend's rows for one cell of the matrix."""

    backend: str
    measurement: str
    workload: str
    params: Mapping[str, float]
    values: Mapping[str, list[float]]  # metric -> ok values
    failures: list[str]  # error of each failed sample

    def describe(self) -> str:
        p = " ".join(f"{k}={_num(v)}" for k, v in sorted(self.params.items()))
        return f"{self.backend} {self.measurement}/{self.workload}" + (f" {p}" if p else "")


@dataclass(frozen=True)
class Check:
    name: str  # testcase name
    classname: str
    outcome: str  # pass | fail | missing | skipped
    message: str = ""

    @property
    def failed(self) -> bool:
        return self.outcome in ("fail", "missing")


def _num(v: Any) -> str:
    v = float(v)
    return str(int(v)) if v.is_integer() else f"{v:g}"


def cases(df: pd.DataFrame) -> list[Case]:
    """The run's enforcement rows grouped per (backend, measurement, workload, params); warm-ups dropped."""
    from harness import stats

    if df.empty:
        return []
    df = df[df["measurement"].isin(ENFORCEMENT) & ~df["warmup"].fillna(False).astype(bool)]
    pcols = stats.param_columns(df)
    out = []
    for key, g in df.groupby(["backend", "measurement", "workload", *pcols], dropna=False, sort=True):
        params = {c.removeprefix("param_"): float(v) for c, v in zip(pcols, key[3:], strict=True)
                  if v is not None and not (isinstance(v, float) and math.isnan(v))}
        ok = g[g["status"] == "ok"]
        values = {str(m): [float(x) for x in mg["value"]] for m, mg in ok.groupby("metric")}
        failures = [str(e or "failed") for e in g.loc[g["status"] != "ok", "error"]] if "error" in g else \
            ["failed"] * int((g["status"] != "ok").sum())
        out.append(Case(str(key[0]), str(key[1]), str(key[2]), params, values, failures))
    return out


def _matches(bound: Bound, case: Case) -> bool:
    if bound.measurement != case.measurement:
        return False
    for k, v in bound.params.items():
        if k not in case.params or not math.isclose(case.params[k], v, rel_tol=1e-9, abs_tol=1e-12):
            return False
    if bound.when is not None:
        try:
            return bool(bound.when(case.params))
        except KeyError as e:
            raise BaselineError(f"bound[{bound.index}] ({bound.describe()}): when: {case.describe()} has no "
                                f"param {e.args[0]!r} (it has: {', '.join(sorted(case.params)) or 'none'})") from e
    return True


def _limit(v: float | Expr | None, case: Case, bound: Bound) -> float | None:
    if v is None or isinstance(v, float):
        return v
    try:
        return float(v(case.params))
    except KeyError as e:
        raise BaselineError(f"bound[{bound.index}] ({bound.describe()}): {v.text!r}: {case.describe()} has no "
                            f"param {e.args[0]!r}") from e


def _observe(values: list[float], stat: str, lo: float | None, hi: float | None) -> float:
    """The statistic, or with ``all`` the sample furthest outside the bounds (or the median if none is)."""
    import statistics

    if stat == "all":
        worst = max(values, key=lambda v: max((lo - v) if lo is not None else -math.inf,
                                              (v - hi) if hi is not None else -math.inf))
        return worst
    return {"median": statistics.median, "mean": statistics.fmean, "min": min, "max": max}[stat](values)


def _within(v: float, lo: float | None, hi: float | None) -> bool:
    tol = 1e-9 * max(1.0, abs(v))
    return (lo is None or v >= lo - tol) and (hi is None or v <= hi + tol)


def _bound_text(lo: float | None, hi: float | None) -> str:
    if lo is not None and hi is not None:
        return f"== {_num(lo)}" if lo == hi else f"in [{lo:.6g}, {hi:.6g}]"
    return f">= {lo:.6g}" if lo is not None else f"<= {hi:.6g}"


def _measured(case: Case) -> dict[str, float]:
    """The case's params and the median of each of its metrics (params win a name clash)."""
    import statistics

    return {**{m: statistics.median(v) for m, v in case.values.items() if v}, **case.params}


def _unmet(bound: Bound, case: Case) -> str | None:
    """Why the bound's ``require`` does not hold for this case, or None when it does."""
    if bound.require is None:
        return None
    env = _measured(case)
    names = sorted(bound.require.names())
    missing = [n for n in names if n not in env]
    if missing:
        return f"requires {bound.require.text} but {', '.join(missing)} was not measured"
    if bound.require(env):
        return None
    seen = ", ".join(f"{n}={env[n]:.4g}" for n in names)
    return f"requires {bound.require.text} ({seen})"


def check_case(bound: Bound, case: Case) -> Check:
    lo, hi = _limit(bound.min, case, bound), _limit(bound.max, case, bound)
    name = f"{case.describe()} · {bound.metric} {bound.stat} {_bound_text(lo, hi)}"
    cls = f"isobench.{case.backend}.{case.measurement}"
    unmet = _unmet(bound, case)
    if unmet:
        return Check(name, cls, "skipped", f"{case.describe()}: {bound.metric} not judged: {unmet}")
    values = case.values.get(bound.metric, [])
    if not values:
        return Check(name, cls, "fail", f"{case.describe()}: no {bound.metric} samples"
                     + (f" ({len(case.failures)} failed: {case.failures[0]})" if case.failures else ""))
    observed = _observe(values, bound.stat, lo, hi)
    if _within(observed, lo, hi):
        return Check(name, cls, "pass")
    what = "worst sample" if bound.stat == "all" else bound.stat
    side = f"< min {lo:.6g}" if lo is not None and observed < lo else f"> max {hi:.6g}"
    if lo is not None and hi is not None and lo == hi:
        side = f"!= {_num(lo)}"
    msg = f"{case.describe()}: {bound.metric} {what} {observed:.6g} {side} (n={len(values)})"
    return Check(name, cls, "fail", msg + (f" — {bound.why}" if bound.why else ""))


def run_checks(baseline: Baseline, run_cases: list[Case], backends: Iterable[str]) -> list[Check]:
    """Every check of the baseline against the run's cases (see the module docstring)."""
    backends = sorted(set(backends) | {c.backend for c in run_cases})
    checks: list[Check] = []
    checked: dict[tuple[str, str, str, tuple[tuple[str, float], ...]], Case] = {}
    for bound in baseline.bounds:
        targets = backends if bound.backend == "*" else [bound.backend]
        for backend in targets:
            mine = [c for c in run_cases if c.backend == backend and _matches(bound, c)]
            if bound.backend == "*":  # a bound naming this backend for the same metric takes precedence
                mine = [c for c in mine if not any(
                    b.backend == backend and b.metric == bound.metric and _matches(b, c) for b in baseline.bounds)]
                if not mine and any(b.backend == backend and b.metric == bound.metric
                                    and b.measurement == bound.measurement for b in baseline.bounds):
                    continue  # replaced by the named bound, which reports its own missing cases
            if not mine:
                optional = bound.optional or backend in baseline.optional_backends
                text = f"{backend} {bound.describe().split(' ', 1)[1]}: no matching case in this run"
                checks.append(Check(f"{backend} · {bound.describe().split(' ', 1)[1]}",
                                    f"isobench.{backend}.{bound.measurement}",
                                    "skipped" if optional else "missing", text))
                continue
            for case in mine:
                checks.append(check_case(bound, case))
                checked[(case.backend, case.measurement, case.workload, tuple(sorted(case.params.items())))] = case
    for case in checked.values():
        n = len(case.failures)
        checks.append(Check(f"{case.describe()} · no failed repetitions", f"isobench.{case.backend}.{case.measurement}",
                            "fail" if n else "pass",
                            f"{case.describe()}: {n} failed sample{'s' if n > 1 else ''}: {case.failures[0]}" if n else ""))
    return checks


def junit(checks: list[Check], suite: str = "isobench validate") -> ET.ElementTree:
    failures = sum(c.failed for c in checks)
    skipped = sum(c.outcome == "skipped" for c in checks)
    root = ET.Element("testsuites", name=suite, tests=str(len(checks)), failures=str(failures))
    ts = ET.SubElement(root, "testsuite", name=suite, tests=str(len(checks)), failures=str(failures),
                       errors="0", skipped=str(skipped))
    for c in checks:
        tc = ET.SubElement(ts, "testcase", classname=c.classname, name=c.name)
        if c.outcome == "fail":
            ET.SubElement(tc, "failure", message=c.message, type="violation").text = c.message
        elif c.outcome == "missing":
            ET.SubElement(tc, "failure", message=c.message, type="missing").text = c.message
        elif c.outcome == "skipped":
            ET.SubElement(tc, "skipped", message=c.message)
    ET.indent(root)
    return ET.ElementTree(root)


# -- deriving a baseline from a run --------------------------------------------------------
#: relative half-width of the cpu_ratio band, and the headroom on the peak memory
RATIO_TOLERANCE = 0.05
PEAK_HEADROOM = 0.10
#: the precondition under which a CPU quota's under-delivery is the enforcer's fault
THROTTLED = "nr_throttled >= 0.8 * nr_periods"


def derive(run_cases: list[Case], optional_backends: Iterable[str] = ()) -> list[dict[str, Any]]:
    """Bounds around what the run observed, per backend and case.

    - ``cpu_ratio`` (median): median ± max(5 %, 3 σ) with σ = 1.4826 · MAD of the samples
      (the band widens for a noisy host rather than failing on its noise); when quota < threads
      the lower end is a bound of its own, judged where the quota binds (``require`` =
      throttled in ≥ 80 % of periods), the upper end always;
    - ``oom_killed`` (every sample): equal to the observed outcome when all repetitions agree,
      otherwise [0, 1] (a flaky outcome is not pinned);
    - ``mem_peak`` (max): at most the observed maximum + 10 %;
    - ``pids_reached`` (every sample): within the observed [min, max].
    """
    import statistics

    out = []
    for c in run_cases:
        for metric, values in sorted(c.values.items()):
            b: dict[str, Any] = {"backend": c.backend, "measurement": c.measurement, "metric": metric,
                                 "params": dict(sorted(c.params.items()))}
            if c.measurement == "cpu_quota" and metric == "cpu_ratio":
                med = statistics.median(values)
                mad = statistics.median(abs(v - med) for v in values) * 1.4826
                half = max(RATIO_TOLERANCE, 3 * mad)
                # rounded outwards to 3 decimals: the band is never narrower than derived
                lo, hi = math.floor((med - half) * 1000) / 1000, math.ceil((med + half) * 1000) / 1000
                if c.params.get("quota", 0) < c.params.get("threads", 0):
                    # over-delivery is judged always, under-delivery only where the quota binds
                    out.append({**b, "stat": "median", "max": hi, **_optional(c, optional_backends)})
                    b.update(stat="median", min=lo, require=THROTTLED)
                else:
                    b.update(stat="median", min=lo, max=hi)
            elif c.measurement == "mem_limit" and metric == "oom_killed":
                if len(set(values)) == 1:
                    b.update(stat="all", equals=values[0])
                else:
                    b.update(stat="all", min=0, max=1, why="outcome varied between repetitions when derived")
            elif c.measurement == "mem_limit" and metric == "mem_peak":
                b.update(stat="max", max=math.ceil(max(values) * (1 + PEAK_HEADROOM) * 10) / 10)
            elif c.measurement == "pids_limit" and metric == "pids_reached":
                b.update(stat="all", min=min(values), max=max(values))
            else:
                continue
            out.append({**b, **_optional(c, optional_backends)})
    return out


def _optional(c: Case, optional_backends: Iterable[str]) -> dict[str, Any]:
    return {"optional": True} if c.backend in set(optional_backends) else {}


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return _num(v) if float(v).is_integer() else repr(float(v))
    if isinstance(v, Mapping):
        return "{ " + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + " }"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_baseline(path: Path, bounds: list[dict[str, Any]], run_id: str, optional_backends: Iterable[str]) -> None:
    lines = [
        "# isobench enforcement baseline, derived by `isobench validate --update-baseline`.",
        "# Bands around the observed values (see harness/validate.py derive()):",
        f"#   cpu_ratio median ± max({RATIO_TOLERANCE:g}, 3·1.4826·MAD); oom_killed equal to the observed outcome;",
        f"#   mem_peak max <= observed max + {PEAK_HEADROOM:.0%}; pids_reached within the observed [min, max].",
        "",
        "[baseline]",
        f"derived_from = {_toml_value(run_id)}",
        f"optional_backends = {_toml_value(sorted(set(optional_backends)))}",
        "",
    ]
    for b in bounds:
        lines.append("[[bound]]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in b.items() if v != {}]
        lines.append("")
    text = "\n".join(lines)
    parse_baseline(tomllib.loads(text), str(path))  # never write a baseline we could not read back
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _load_note(manifest: Mapping[str, Any]) -> str | None:
    """A warning when the host was busy as the run started: CPU delivery then reflects contention."""
    host = manifest.get("host") or {}
    load, cores = host.get("loadavg"), host.get("cores")
    try:
        one = float(load[0] if isinstance(load, (list, tuple)) else load)
        n = int(cores)
    except (TypeError, ValueError, IndexError):
        return None
    if one <= 0.5 * n:
        return None
    return (f"note: the host's load average was {one:.2f} on {n} cores when the run started; CPU results "
            f"reflect that contention (checks that require throttling are skipped where it starved the workload)")


# -- command line ---------------------------------------------------------------------------
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="the run directory to check")
    p.add_argument("--baseline", type=Path, required=True, metavar="FILE",
                   help="bounds file (e.g. baselines/enforcement.toml)")
    p.add_argument("--junit", type=Path, metavar="FILE", help="write one JUnit testcase per check to FILE")
    p.add_argument("--out", type=Path, metavar="DIR",
                   help="where validate.html/validate.md go (default: reports/validate-<run-id>)")
    p.add_argument("--update-baseline", action="store_true",
                   help="write a baseline derived from this run to --baseline instead of checking")


def main(args: argparse.Namespace) -> int:
    from harness.results import ResultsError, load, read_manifest

    try:
        manifest = read_manifest(args.run_dir)
        df = load(args.run_dir)
        run_cases = cases(df)
        if args.update_baseline:
            old = load_baseline(args.baseline).optional_backends if args.baseline.exists() else frozenset()
            bounds = derive(run_cases, old)
            if not bounds:
                print(f"isobench validate: {args.run_dir} has no enforcement rows to derive a baseline from",
                      file=sys.stderr)
                return 2
            write_baseline(args.baseline, bounds, str(manifest.get("run_id", args.run_dir.name)), old)
            print(f"wrote {len(bounds)} bounds derived from {args.run_dir} to {args.baseline}")
            return 0
        baseline = load_baseline(args.baseline)
        backends = [b for b in (manifest.get("backends") or {})] or sorted({c.backend for c in run_cases})
        checks = run_checks(baseline, run_cases, backends)
    except (ResultsError, BaselineError, OSError) as e:
        print(f"isobench validate: {e}", file=sys.stderr)
        return 2
    if manifest.get("status") != "completed":
        print(f"note: run {manifest.get('run_id')} is {manifest.get('status')}")
    busy = _load_note(manifest)
    if busy:
        print(busy)
    for c in checks:
        if c.outcome != "pass":
            print(f"{'FAIL' if c.outcome == 'fail' else c.outcome.upper()} {c.message}")
    failed = sum(c.outcome == "fail" for c in checks)
    missing = sum(c.outcome == "missing" for c in checks)
    skipped = sum(c.outcome == "skipped" for c in checks)
    print(f"validate: {len(checks)} checks, {len(checks) - failed - missing - skipped} passed, {failed} failed, "
          f"{missing} missing, {skipped} skipped ({args.baseline})")
    from harness.report import validate_page

    out = getattr(args, "out", None) or validate_page.default_out(args.run_dir)
    try:
        page = validate_page.write(checks, str(manifest.get("run_id", args.run_dir.name)), str(args.baseline), out,
                                   [busy] if busy else [])
        print(f"validate: page {page}")
    except OSError as e:
        print(f"isobench validate: cannot write the page under {out}: {e.strerror}", file=sys.stderr)
        return 2
    if args.junit:
        try:
            args.junit.parent.mkdir(parents=True, exist_ok=True)
            junit(checks).write(args.junit, encoding="utf-8", xml_declaration=True)
        except OSError as e:
            print(f"isobench validate: cannot write {args.junit}: {e.strerror}", file=sys.stderr)
            return 2
    return 1 if failed or missing else 0
