"""Warnings a reader can act on, grouped by backend.

pyperf's "cv ≥ 10 %" was made for means; startup latencies are skewed, so it
fired on nearly every series and said nothing.  What can make a *median*
misleading is checked instead, on the series the findings state:

- **too few samples**: below ``MIN_N_CI`` a median has no 95 % interval;
- **wide interval**: the median's interval spans more than ±``shape.WIDE`` of it;
- **drift** and **bimodal**: as ``harness.stats.shape`` defines them;
- **failed samples**, with the first error and where the logs are.

Every other series gets the same checks as per-series notes in the folded
statistics table (``notes``), not as warnings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from harness.measure import catalogue
from harness.report import style
from harness.report.model import ReportData
from harness.stats import MIN_N_CI, estimate, shape
from harness.stats.numbers import quantity, stated
from harness.stats.quantile import clean
from harness.stats.series import COLUMNS, SeriesKey, case_columns, groups

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd


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
    x = clean(values_in_order)
    out: list[tuple[str, str]] = []
    e = estimate.median(x)
    if e.n == 0:
        return out
    if e.unresolved.startswith("too few"):
        out.append(("too few samples", f"n={e.n}, no 95 % interval for the median (n ≥ {MIN_N_CI} needed)"))
    elif e.rel_halfwidth > shape.WIDE:
        out.append(("wide interval", f"the median's 95 % interval spans ±{e.rel_halfwidth:.0%} "
                                     f"({stated(e, unit)})"))
    d = shape.drift(x)
    if d is not None and d.trend:
        out.append(("drift", f"{d.change:+.0%} from the first to the last third of the run (Spearman p={d.p:.1g})"))
    b = shape.bimodal(x)
    if b is not None:
        (m1, s1), (m2, s2) = b
        out.append(("bimodal", f"two clusters: {s1:.0%} of samples near {quantity(m1, unit)}, "
                               f"{s2:.0%} near {quantity(m2, unit)}"))
    return out


ACTIONS = {
    "too few samples": "raise this measurement's repetitions for the backend in the scenario (overrides)",
    "wide interval": "run more repetitions, or on a quieter host",
    "drift": "the host changed during the run (load, thermal, caches); compare within this run only, "
             "or rerun on a quiet host",
    "bimodal": "an intermittent slow path: read the distribution in the startup chart, not just the median",
    "failed samples": "read the error and the instance logs under the run's logs/ directory",
}


def _ok(data: ReportData, columns: Sequence[str]) -> pd.DataFrame:
    """The ok rows, only ``columns`` of them (those present): a million rows copied whole would be
    the run's memory again."""
    r = data.rows
    cols = [c for c in dict.fromkeys(columns) if c in r.columns]
    return r.loc[r["status"] == "ok", cols] if not r.empty else r


def _ordered(g: pd.DataFrame) -> pd.DataFrame:
    return g.sort_values("seq") if "seq" in g.columns else g


def warnings(data: ReportData) -> list[Warning_]:
    """The warnings about the series the findings state, then failed samples; by backend."""
    ok = _ok(data, ["measurement", "metric", "workload", "series", "unit", "value", "seq"])
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
    pairs = data.rows[["series", "backend"]].drop_duplicates() if not data.rows.empty else data.rows
    rank = {s: style.backend_rank(str(b)) for s, b in zip(pairs.get("series", []), pairs.get("backend", []),
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
            rest.append(Warning_(backend, rule, what, f"no 95 % interval for the median (n ≥ {MIN_N_CI} needed)",
                                 f"raise repetitions to ≥ {MIN_N_CI} for this backend in the scenario's "
                                 f"{' and '.join(measurements)} experiment{'s' if len(measurements) > 1 else ''} "
                                 "(a per-backend `overrides` entry)"))
        else:
            what = ", ".join(f"{w.what} ({w.detail.split('spans ')[1].split(' ')[0]})" for w in group)
            rest.append(Warning_(backend, rule, what, f"the median's 95 % interval is wider than ±{shape.WIDE:.0%}",
                                 ACTIONS[rule] + busy_host(data, backend)))
    return rest


def busy_host(data: ReportData, series: str | None = None) -> str:
    """`` (the load average was 8.9 on 2 cores when the run started)`` when it was above half the cores;
    with ``series``, of a run that series comes from (several hosts: its own host's load)."""
    rows = data.rows
    mine = set(rows.loc[rows["series"] == series, "run"]) if series and not rows.empty and "run" in rows else None
    for run in data.runs:
        if mine is not None and run.run_id not in mine:
            continue
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


def notes(data: ReportData) -> dict[SeriesKey, str]:
    """Per-series notes for the statistics table: the same checks on every series with ≥ 2 samples."""
    ok = _ok(data, [*COLUMNS, "split", *case_columns(data.rows), "value", "seq"])
    if ok.empty:
        return {}
    out = {}
    for key, _, g in groups(ok, split=True):
        if len(g) < 2:
            continue  # a grid cell measured once: nothing to say about a distribution
        found = check(_ordered(g)["value"].tolist(), key.unit)
        if found:
            out[key] = "; ".join(f"{rule}: {detail}" for rule, detail in found)
    return out
