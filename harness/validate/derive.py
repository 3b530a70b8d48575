"""``--update-baseline``: bounds around what a trusted run observed, per backend and case.

The half-width of a CPU band comes from the run's own spread between
repetitions (an A/A comparison: the same cell measured again), not from a
round number: 3 σ with σ = 1.4826 · MAD, never below ``MIN_TOLERANCE`` (the
ratio's resolution) and never above ``MAX_TOLERANCE``, so that a 3 % under- or
over-delivery still fails.  A run noisier than that is reported: its bands are
clamped and the host cannot resolve a 3 % regression.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from typing import Any

from harness.validate.checks import Case
from runtimes.declaration import resolve

#: the band is never narrower (the ratio's resolution on a quiet host) ...
MIN_TOLERANCE = 0.01
#: ... nor wider: the gate exists to catch a 3 % under- or over-delivery
MAX_TOLERANCE = 0.025
#: headroom on the peak memory
PEAK_HEADROOM = 0.10
#: the precondition under which a CPU quota's under-delivery is the enforcer's fault
THROTTLED = "throttled_share >= 0.8"
#: how much throttling a cell whose demand is within its quota may show (the slice-expiry bug
#: throttles such cells in most periods)
UNDER_QUOTA_THROTTLING = 0.05

COMMENT = f"""isobench enforcement baseline, derived by `isobench validate --update-baseline`.
Bands around the observed values (harness/validate/derive.py):
  cpu_ratio median ± clamp(3·1.4826·MAD, {MIN_TOLERANCE:g}, {MAX_TOLERANCE:g}); under-delivery judged where
    {THROTTLED}; throttled_share <= {UNDER_QUOTA_THROTTLING:g} where the demand is within the quota;
  oom_killed equal to the observed outcome; mem_peak max <= observed max + {PEAK_HEADROOM:.0%};
  pids_reached within the observed [min, max]."""


def tolerance(values: list[float]) -> tuple[float, bool]:
    """(half-width of the band, whether the spread had to be clamped to MAX_TOLERANCE)."""
    med = statistics.median(values)
    spread = 3 * 1.4826 * statistics.median(abs(v - med) for v in values)
    return min(max(MIN_TOLERANCE, spread), MAX_TOLERANCE), spread > MAX_TOLERANCE


def derive(run_cases: list[Case], optional_backends: Iterable[str] = ()) -> tuple[list[dict[str, Any]], list[str]]:
    """(bounds, warnings) for every enforcement case of the run."""
    out: list[dict[str, Any]] = []
    warnings: list[str] = []
    optional = set(optional_backends)
    for c in run_cases:
        extra = {"optional": True} if c.backend in optional else {}
        base = {"backend": c.backend, "measurement": c.measurement, "params": dict(sorted(c.params.items()))}
        for metric, values in sorted(c.values.items()):
            b: dict[str, Any] = {**base, "metric": metric}
            bounds = _bounds(c, metric, values, warnings)
            out += [{**b, **x, **extra} for x in bounds]
    return out, warnings


def _bounds(c: Case, metric: str, values: list[float], warnings: list[str]) -> list[dict[str, Any]]:
    """The bounds of one metric of one case, as its measurement's declaration derives them."""
    from harness.measure import catalogue

    info = catalogue().info(c.measurement)
    return resolve(info.bounds)(c, metric, values, warnings) if info is not None and info.bounds else []


def cpu_quota_bounds(c: Case, metric: str, values: list[float], warnings: list[str]) -> list[dict[str, Any]]:
    """A band around the median CPU ratio (its lower edge only where the quota held the workload
    back), a ceiling on throttling under the quota, and the throttling counter's presence."""
    quota, threads = c.params.get("quota", math.inf), c.params.get("threads", 0)
    if metric == "cpu_ratio":
        med = statistics.median(values)
        half, clamped = tolerance(values)
        if clamped:
            warnings.append(f"{c.describe()}: cpu_ratio spread between repetitions exceeds ±{MAX_TOLERANCE:g}; "
                            f"band clamped (this host cannot resolve a 3 % regression in this cell)")
        lo, hi = math.floor((med - half) * 1000) / 1000, math.ceil((med + half) * 1000) / 1000
        if quota < threads:  # over-delivery always; under-delivery where the quota held it back
            return [{"stat": "median", "max": hi}, {"stat": "median", "min": lo, "require": THROTTLED}]
        return [{"stat": "median", "max": hi}]
    if metric == "throttled_share" and quota >= threads:
        return [{"stat": "median", "max": max(UNDER_QUOTA_THROTTLING, math.ceil(max(values) * 100) / 100)}]
    if metric == "nr_periods":
        return [{"stat": "min", "min": 1}]  # the counter exists and moved: a missing one fails
    return []


def mem_limit_bounds(c: Case, metric: str, values: list[float], warnings: list[str]) -> list[dict[str, Any]]:
    """The OOM kill as observed (every repetition), the peak with headroom."""
    if metric == "oom_killed":
        if len(set(values)) == 1:
            return [{"stat": "all", "equals": values[0]}]
        return [{"stat": "all", "min": 0, "max": 1, "why": "outcome varied between repetitions when derived"}]
    if metric == "mem_peak":
        return [{"stat": "max", "max": math.ceil(max(values) * (1 + PEAK_HEADROOM) * 10) / 10}]
    return []


def pids_limit_bounds(c: Case, metric: str, values: list[float], warnings: list[str]) -> list[dict[str, Any]]:
    """The processes reached, within what was observed."""
    if metric == "pids_reached":
        return [{"stat": "all", "min": min(values), "max": max(values)}]
    return []
