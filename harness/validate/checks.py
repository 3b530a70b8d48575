"""Checking a run against a baseline: one ``Check`` per (bound, backend, case).

A bound that matches no case of a backend of the run is **missing**, which
fails like a violation (the gate must not pass because a measurement did not
run).  Failed repetitions in a checked case are a failure of their own, and so
is a metric a bound or its ``require`` needs that the run did not record: a
counter the backend did not expose is a failure, never a skip.  A case whose
``require`` is false is **skipped** with the values that made it so (e.g. a
busy host never let the workload reach its quota: the cgroup was rarely
throttled).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from harness.stats.numbers import EXACT, fmt
from harness.validate.baseline import Baseline, Bound
from harness.validate.expr import BaselineError, Expr

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

@dataclass(frozen=True)
class Case:
    """One backend's rows for one cell of the matrix."""

    backend: str
    measurement: str
    workload: str
    params: Mapping[str, float]
    values: Mapping[str, list[float]]  # metric -> ok values
    failures: list[str]  # error of each failed sample
    #: the distinct parts of its rows' notes (how the backend enforced the limit, where it says)
    notes: tuple[str, ...] = ()

    def describe(self) -> str:
        p = " ".join(f"{k}={fmt(v, EXACT)}" for k, v in sorted(self.params.items()))
        return f"{self.backend} {self.measurement}/{self.workload}" + (f" {p}" if p else "")


@dataclass(frozen=True)
class Check:
    name: str  # testcase name
    classname: str
    outcome: str  # pass | fail | missing | skipped
    message: str = ""
    exception: str = ""  # a pass under a baseline exception: its reason

    @property
    def failed(self) -> bool:
        return self.outcome in ("fail", "missing")


def cases(df: pd.DataFrame) -> list[Case]:
    """The rows of the gated measurements (``MeasurementInfo.gated``: the enforcement ones) grouped per
    backend and stored case (measurement, workload, params); warm-ups dropped."""
    from harness.measure import catalogue
    from harness.stats.series import CASE, case_columns, param_columns  # pandas: only when a run is checked

    if df.empty:
        return []
    df = df[df["measurement"].isin(catalogue().gated()) & ~df["warmup"].fillna(False).astype(bool)]
    pcols = param_columns(df)
    if CASE not in df.columns:  # a run stored before rows carried their case
        df = df.assign(**{CASE: None})
    out = []
    for key, g in df.groupby(["backend", "measurement", "workload", *case_columns(df)], dropna=False, sort=True):
        params = {c.removeprefix("param_"): float(v)  # type: ignore[arg-type]  # a param value
                  for c, v in zip(pcols, key[3:-1], strict=True)
                  if v is not None and not (isinstance(v, float) and math.isnan(v))}
        ok = g[g["status"] == "ok"]
        values = {str(m): [float(x) for x in mg["value"]] for m, mg in ok.groupby("metric")}
        failures = [str(e or "failed") for e in g.loc[g["status"] != "ok", "error"]] if "error" in g else \
            ["failed"] * int((g["status"] != "ok").sum())
        notes: list[str] = [str(n) for n in g["note"].dropna()] if "note" in g else []
        parts = tuple(dict.fromkeys(part for n in notes for part in n.split("; ") if part))
        out.append(Case(str(key[0]), str(key[1]), str(key[2]), params, values, failures, parts))
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
    if stat == "all":
        worst = max(values, key=lambda v: max((lo - v) if lo is not None else -math.inf,
                                              (v - hi) if hi is not None else -math.inf))
        return worst
    by_name: dict[str, Callable[[list[float]], float]] = {
        "median": statistics.median, "mean": statistics.fmean, "min": min, "max": max}
    return by_name[stat](values)


def _within(v: float, lo: float | None, hi: float | None) -> bool:
    tol = 1e-9 * max(1.0, abs(v))
    return (lo is None or v >= lo - tol) and (hi is None or v <= hi + tol)


def _bound_text(lo: float | None, hi: float | None) -> str:
    if lo is not None and hi is not None:
        return f"== {fmt(lo, EXACT)}" if lo == hi else f"in [{lo:.6g}, {hi:.6g}]"
    return f">= {lo:.6g}" if lo is not None else f"<= {hi:.6g}"


def _measured(case: Case) -> dict[str, float]:
    """The case's params and the median of each of its metrics (params win a name clash)."""
    return {**{m: statistics.median(v) for m, v in case.values.items() if v}, **case.params}


def _unmet(bound: Bound, case: Case) -> tuple[str, str] | None:
    """("fail", why) when the ``require`` needs a metric the run lacks (a missing counter),
    ("skipped", why) when it does not hold for this case, None when it holds."""
    if bound.require is None:
        return None
    env = _measured(case)
    names = sorted(bound.require.names())
    missing = [n for n in names if n not in env]
    if missing:
        return "fail", f"requires {bound.require.text} but {', '.join(missing)} was not measured (missing counter)"
    if bound.require(env):
        return None
    seen = ", ".join(f"{n}={env[n]:.4g}" for n in names)
    return "skipped", f"requires {bound.require.text} ({seen})"


def check_case(bound: Bound, case: Case) -> Check:
    lo, hi = _limit(bound.min, case, bound), _limit(bound.max, case, bound)
    name = f"{case.describe()} · {bound.metric} {bound.stat} {_bound_text(lo, hi)}"
    cls = f"isobench.{case.backend}.{case.measurement}"
    unmet = _unmet(bound, case)
    if unmet:
        return Check(name, cls, unmet[0], f"{case.describe()}: {bound.metric} not judged: {unmet[1]}")
    values = case.values.get(bound.metric, [])
    if not values:
        return Check(name, cls, "fail", f"{case.describe()}: no {bound.metric} samples"
                     + (f" ({len(case.failures)} failed: {case.failures[0]})" if case.failures
                        else " (the backend did not report it: missing counter)"))
    observed = _observe(values, bound.stat, lo, hi)
    if _within(observed, lo, hi):
        return Check(name, cls, "pass", exception=bound.why if bound.exception else "")
    what = "worst sample" if bound.stat == "all" else bound.stat
    side = f"< min {lo:.6g}" if lo is not None and observed < lo else f"> max {hi:.6g}"
    if lo is not None and hi is not None and lo == hi:
        side = f"!= {fmt(lo, EXACT)}"
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
