"""``isobench validate --self-test RUN``: proof that the gate catches what it exists for.

The run is checked as it is (it must pass), then once per *mutation*: a copy of
its cases rewritten as if the enforcer had regressed in one specific way.
Each mutated run must fail the gate with a message naming a mutated cell.  A
mutation the gate lets through means the baseline cannot catch that
regression on this run, and the self-test fails.

The mutations change the recorded values consistently (delivered CPU, ratio,
throttling counters together), as a real regression would show in every
counter at once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from harness.validate.baseline import Baseline
from harness.validate.checks import Case, Check, run_checks
from runtimes.declaration import resolve

Values = dict[str, list[float]]


def _scale(values: Mapping[str, list[float]], factor: float, *metrics: str) -> Values:
    return {**values, **{m: [v * factor for v in values[m]] for m in metrics if m in values}}


def _set(values: Mapping[str, list[float]], **metrics: float) -> Values:
    return {**values, **{m: [v] * len(next(iter(values.values()), [0])) for m, v in metrics.items()}}


def _limiting(c: Case) -> bool:
    """A CPU quota cell whose quota holds the workload back."""
    return c.params.get("quota", float("inf")) < c.params.get("threads", 0)


def quota_ignored(c: Case, cores: int) -> Values | None:
    """The quota is not enforced: the threads get what the host has (nothing is throttled)."""
    if not _limiting(c):
        return None
    exp = c.values.get("cpu_expected", [c.params["quota"]])
    got = min(c.params["threads"], cores)
    v = {**c.values, "cpu_delivered": [got] * len(exp), "cpu_ratio": [got / e for e in exp]}
    return _set(v, throttled_share=0, nr_throttled=0, throttled_ms=0)


def under_delivery(c: Case, cores: int, factor: float = 0.97) -> Values | None:
    """3 % less CPU than the quota in every throttled cell (still throttled every period)."""
    if not _limiting(c):
        return None
    return _scale(c.values, factor, "cpu_delivered", "cpu_ratio", "period_ratio_p1", "period_ratio_p50",
                  "period_ratio_p99")


def over_delivery(c: Case, cores: int) -> Values | None:
    """3 % more CPU than the quota in every throttled cell."""
    return under_delivery(c, cores, 1.03)


def oom_never(c: Case, cores: int) -> Values | None:
    """Allocations beyond the memory limit are never OOM-killed (and so touch all they ask)."""
    if c.params.get("mib", 0) <= c.params.get("limit_mib", float("inf")):
        return None
    v = {k: x for k, x in c.values.items() if k != "oom_time_ms"}
    return _set(v, oom_killed=0, mem_peak=c.params["mib"])


def extra_fork(c: Case, cores: int) -> Values | None:
    """The pids limit lets one fork more through than it allows."""
    if c.params.get("count", 0) < c.params.get("limit", float("inf")):
        return None
    return _set(c.values, pids_reached=c.params["limit"] + 1)


def missing_counter(c: Case, cores: int) -> Values | None:
    """The backend stops exposing the CFS throttling counters."""
    gone = {"nr_periods", "nr_throttled", "throttled_ms", "throttled_share"}
    return {k: v for k, v in c.values.items() if k not in gone}


@dataclass(frozen=True)
class Mutation:
    """A regression of one measurement's enforcer, as its cases would record it."""

    measurement: str
    how: Callable[[Case, int], Values | None]  # a case's mutated values, or None: it does not apply


def mutations() -> dict[str, Mutation]:
    """name -> mutation, as the measurements declare them (``MeasurementInfo.mutations``)."""
    from harness.measure import catalogue

    return {name: Mutation(info.name, resolve(ref)) for info in catalogue().measurements.values()
            for name, ref in info.mutations.items()}


@dataclass(frozen=True)
class Verdict:
    mutation: str
    mutated: list[str]  # the cells the mutation changed
    failures: list[Check]  # failed checks that name a mutated cell

    @property
    def caught(self) -> bool:
        return bool(self.failures)


def mutate(cases: list[Case], mutation: Mutation, cores: int) -> tuple[list[Case], list[str]]:
    """The cases with ``mutation`` applied to those of its measurement, and the cells it changed."""
    out, changed = [], []
    for c in cases:
        values = mutation.how(c, cores) if c.measurement == mutation.measurement else None
        if values is None:
            out.append(c)
        else:
            out.append(dataclasses.replace(c, values=values))
            changed.append(c.describe())
    return out, changed


def self_test(baseline: Baseline, cases: list[Case], backends: Iterable[str],
              cores: int) -> tuple[list[Check], list[Verdict]]:
    """(the untouched run's failed checks, one verdict per mutation)."""
    backends = list(backends)
    clean = [c for c in run_checks(baseline, cases, backends) if c.failed]
    verdicts = []
    for name, mutation in mutations().items():
        mutated, changed = mutate(cases, mutation, cores)
        if not changed:
            verdicts.append(Verdict(name, [], []))
            continue
        names = set(changed)
        failed = [c for c in run_checks(baseline, mutated, backends)
                  if c.failed and any(c.message.startswith(n + ":") for n in names)]
        verdicts.append(Verdict(name, changed, failed))
    return clean, verdicts


def report(clean: list[Check], verdicts: list[Verdict]) -> tuple[list[str], bool]:
    """(lines to print, passed)."""
    lines = [f"untouched run: {'passes' if not clean else f'FAILS ({len(clean)} checks)'}"]
    lines += [f"  {c.message}" for c in clean[:5]]
    ok = not clean
    for v in verdicts:
        if not v.mutated:
            lines.append(f"{v.mutation}: NOT TESTED (no cell of this run it applies to)")
            ok = False
            continue
        state = f"caught ({len(v.failures)} failed checks)" if v.caught else "NOT CAUGHT"
        lines.append(f"{v.mutation}: {state} in {len(v.mutated)} mutated cells")
        if v.caught:
            lines.append(f"  e.g. {v.failures[0].message}")
        ok = ok and v.caught
    return lines, ok
