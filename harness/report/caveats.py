"""Warnings a reader can act on, grouped by backend.

pyperf's "cv ≥ 10 %" was made for means; startup latencies are skewed, so it
fired on nearly every series and said nothing.  What can make a *median*
misleading is checked instead, on the series the findings state:

- **too few samples**: below ``intervals.MIN_N`` a median has no 95 % interval;
- **wide interval**: the median's interval spans more than ±``WIDE`` of it;
- **drift**: the last third of the run differs from the first by more than
  ``DRIFT`` (and Spearman's test says it is a trend, p < ``DRIFT_P``);
- **bimodal**: the samples fall into two well-separated clusters, so the
  median describes neither: a two-means split in log space (each cluster
  ≥ 10 %) with Ashman's D > ``BIMODAL_D`` *and* an empty gap between the
  clusters wider than ``BIMODAL_GAP`` pooled standard deviations (a forced
  split of one normal sample already gives D ≈ 2.6, hence both);
- **failed samples**, with the first error and where the logs are.

Every other series gets the same checks as per-series notes in the folded
statistics table (``notes``), not as warnings.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.measure import catalogue
from harness.report import findings, intervals, style
from harness.report.model import ReportData

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

WIDE = 0.10
DRIFT = 0.10
DRIFT_P = 0.01
BIMODAL_D = 4.0
BIMODAL_GAP = 1.5
BIMODAL_SHARE = 0.10
BIMODAL_MIN_N = 10


@dataclass(frozen=True)
class Warning_:
    backend: str  # the series label (backend, accelerator, host)
    rule: str  # too few samples | wide interval | drift | bimodal | failed samples
    what: str  # which series
    detail: str
    action: str

    def text(self) -> str:
        return f"{self.what}: {self.detail} — {self.action}"


def check(values_in_order: Sequence[float], unit: str) -> list[tuple[str, str]]:
    """(rule, detail) for one series' ok values, in the order they were measured."""
    x = intervals.clean(values_in_order)
    out: list[tuple[str, str]] = []
    e = intervals.median(x)
    if e.n == 0:
        return out
    if e.unresolved.startswith("too few"):
        out.append(("too few samples", f"n={e.n}, no 95 % interval for the median (n ≥ {intervals.MIN_N} needed)"))
    elif e.rel_halfwidth > WIDE:
        out.append(("wide interval", f"the median's 95 % interval spans ±{e.rel_halfwidth:.0%} "
                                     f"({findings.stated(e, unit)})"))
    d = intervals.drift(x)
    if d is not None and abs(d.change) > DRIFT and d.p < DRIFT_P:
        out.append(("drift", f"{d.change:+.0%} from the first to the last third of the run (Spearman p={d.p:.1g})"))
    b = bimodal(x)
    if b is not None:
        (m1, s1), (m2, s2) = b
        out.append(("bimodal", f"two clusters: {s1:.0%} of samples near {findings.quantity(m1, unit)}, "
                               f"{s2:.0%} near {findings.quantity(m2, unit)}"))
    return out


def bimodal(x: np.ndarray) -> tuple[tuple[float, float], tuple[float, float]] | None:
    """((median, share) of the low cluster, (median, share) of the high one), or None.

    Two-means in log space (latencies are multiplicative), split at the best
    threshold of the sorted values; separated when Ashman's D exceeds ``BIMODAL_D``.
    """
    if x.size < BIMODAL_MIN_N or np.any(x <= 0):
        return None
    v = np.sort(np.log(x))
    k_min = max(2, math.ceil(BIMODAL_SHARE * v.size))
    best, split = math.inf, -1
    for k in range(k_min, v.size - k_min + 1):
        a, b = v[:k], v[k:]
        cost = a.var() * a.size + b.var() * b.size
        if cost < best:
            best, split = cost, k
    if split < 0:
        return None
    a, b = v[:split], v[split:]
    spread = math.sqrt(a.var(ddof=1) + b.var(ddof=1))
    if spread == 0:
        return None
    ashman = math.sqrt(2) * abs(b.mean() - a.mean()) / spread
    gap = (b.min() - a.max()) / (spread / math.sqrt(2))
    if ashman <= BIMODAL_D or gap <= BIMODAL_GAP:
        return None
    return (float(np.exp(np.median(a))), a.size / v.size), (float(np.exp(np.median(b))), b.size / v.size)


ACTIONS = {
    "too few samples": "raise this measurement's repetitions for the backend in the scenario (overrides)",
    "wide interval": "run more repetitions, or on a quieter host",
    "drift": "the host changed during the run (load, thermal, caches); compare within this run only, "
             "or rerun on a quiet host",
    "bimodal": "an intermittent slow path: read the distribution in the startup chart, not just the median",
    "failed samples": "read the error and the instance logs under the run's logs/ directory",
}


def _ordered(g: pd.DataFrame) -> pd.DataFrame:
    return g.sort_values("seq") if "seq" in g.columns else g


def warnings(data: ReportData) -> list[Warning_]:
    """The warnings about the series the findings state, then failed samples; by backend."""
    ok = data.rows[data.rows["status"] == "ok"] if not data.rows.empty else data.rows
    out: list[Warning_] = []
    for info in catalogue().measurements.values():
        if info.headline is None or info.single_shot or ok.empty:
            continue  # single-shot cells (enforcement) are measured once each by design; the findings judge them
        measurement, metric = info.name, info.headline.metric
        sel = ok[(ok["measurement"] == measurement) & (ok["metric"] == metric)
                 & ok["workload"].isin(info.headline.workloads)]
        for (series, wl), g in sel.groupby(["series", "workload"], sort=False):
            what = f"{measurement}/{wl} {metric}"
            for rule, detail in check(_ordered(g)["value"].tolist(), str(g["unit"].iloc[0])):
                out.append(Warning_(str(series), rule, what, detail, ACTIONS[rule]))
    out = _merge(out, data) + _failures(data)
    rank = {s: style.backend_rank(str(b)) for s, b in zip(data.rows.get("series", []), data.rows.get("backend", []),
                                                          strict=True)} if not data.rows.empty else {}
    return sorted(out, key=lambda w: (rank.get(w.backend, (99, w.backend)), w.backend, w.rule, w.what))


def _merge(ws: list[Warning_], data: ReportData) -> list[Warning_]:
    """One "too few samples" and one "wide interval" line per backend, naming each series with its n
    or its interval's width."""
    merged: dict[tuple[str, str], list[Warning_]] = {}
    rest = []
    for w in ws:
        if w.rule in ("too few samples", "wide interval"):
            merged.setdefault((w.backend, w.rule), []).append(w)
        else:
            rest.append(w)
    for (backend, rule), group in merged.items():
        if rule == "too few samples":
            what = ", ".join(f"{w.what} ({w.detail.split(',')[0]})" for w in group)
            measurements = sorted({w.what.split("/")[0] for w in group})
            rest.append(Warning_(backend, rule, what, f"no 95 % interval for the median (n ≥ {intervals.MIN_N} needed)",
                                 f"raise repetitions to ≥ {intervals.MIN_N} for this backend in the scenario's "
                                 f"{' and '.join(measurements)} experiment{'s' if len(measurements) > 1 else ''} "
                                 "(a per-backend `overrides` entry)"))
        else:
            what = ", ".join(f"{w.what} ({w.detail.split('spans ')[1].split(' ')[0]})" for w in group)
            rest.append(Warning_(backend, rule, what, f"the median's 95 % interval is wider than ±{WIDE:.0%}",
                                 ACTIONS[rule] + busy_host(data)))
    return rest


def busy_host(data: ReportData) -> str:
    """`` (the load average was 8.9 on 2 cores when the run started)`` when it was above half the cores."""
    for run in data.runs:
        load, cores = run.host.get("loadavg"), run.host.get("cores")
        try:
            one = float(load[0] if isinstance(load, (list, tuple)) else load)  # type: ignore[arg-type]
            n = int(cores)  # type: ignore[arg-type]  # None and junk end in the except below
        except (TypeError, ValueError, IndexError):
            continue
        if one > 0.5 * n:
            return f" (the load average was {one:.1f} on {n} cores when run {run.run_id} started)"
    return ""


def _failures(data: ReportData) -> list[Warning_]:
    r = data.rows
    if r.empty:
        return []
    failed = r[r["status"] != "ok"]
    out = []
    for (series, m, wl), g in failed.groupby(["series", "measurement", "workload"], sort=True):
        errors = g["error"].dropna() if "error" in g.columns else g["status"].iloc[0:0]
        first = str(errors.iloc[0]) if len(errors) else "no error recorded"
        out.append(Warning_(str(series), "failed samples", f"{m}/{wl}",
                            f"{len(g)} failed sample{'s' if len(g) != 1 else ''} ({first})", ACTIONS["failed samples"]))
    return out


def grouped(ws: Sequence[Warning_]) -> dict[str, list[Warning_]]:
    out: dict[str, list[Warning_]] = {}
    for w in ws:
        out.setdefault(w.backend, []).append(w)
    return out


def notes(data: ReportData) -> dict[tuple[str, ...], str]:
    """Per-series notes for the statistics table: the same checks on every series with ≥ 2 samples,
    keyed by ``series_key``."""
    from harness.report import tables

    ok = data.rows[data.rows["status"] == "ok"] if not data.rows.empty else data.rows
    if ok.empty:
        return {}
    pcols = tables.used_params(ok)
    keys = ["series", "measurement", "workload", "metric", *pcols]
    out = {}
    for key, g in ok.groupby(keys, dropna=False, sort=False):
        if len(g) < 2:
            continue  # a grid cell measured once: nothing to say about a distribution
        found = check(_ordered(g)["value"].tolist(), str(g["unit"].iloc[0]))
        if found:
            out[series_key(dict(zip(keys, key, strict=True)), pcols)] = "; ".join(
                f"{rule}: {detail}" for rule, detail in found)
    return out


def series_key(row: Any, pcols: Sequence[str]) -> tuple[str, ...]:
    """(series, measurement, workload, metric, "param=value"…) with missing params left out, so that
    tables with different param columns agree on a series."""
    base = tuple(str(row[c]) for c in ("series", "measurement", "workload", "metric"))
    return base + tuple(f"{c}={style.fmt_param(row[c])}" for c in pcols if not style.is_missing(row[c]))
