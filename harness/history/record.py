"""One run as history rows: its identity (where, what, which commit) and one row per series.

A row holds what a later report needs without the run's samples: the series' median and its 95 %
interval (drawn), and the run's value on the A/B test's scale with that value's sampling error
(``harness.stats.runs``: the median of the values the test sees, e.g. the distance from 1 of a
ratio, and the standard error of that median on the log and the absolute scale) -- the run is
the unit of the step test (``harness.history.steps``).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa

#: the identity columns of a run, in the order a table shows them
IDENTITY = ("run_id", "path", "started", "status", "host", "kernel", "cgroup", "cell", "in_guest", "commit",
            "dirty", "scenario")
#: the series columns of a row
SERIES = ("backend", "accel", "runtime", "measurement", "workload", "metric", "unit", "params", "case")
#: what was measured
STATS = ("n", "failed", "median", "ci_lo", "ci_hi", "direction", "tick", "resolution", "t_median", "t_se_log",
         "t_se_abs")


@dataclass(frozen=True)
class Identity:
    run_id: str
    path: str
    started: str  # ISO 8601, UTC where the manifest said so
    status: str
    host: str  # the physical host: a matrix guest's run counts as its host's
    kernel: str  # the kernel the run measured (a guest's own)
    cgroup: str  # cgroup version ("1", "2", "?")
    cell: str  # kernel × cgroup label (a matrix guest's own)
    in_guest: bool
    commit: str  # the project's commit ("" unknown)
    dirty: bool
    scenario: str


def identity(run_dir: Path, manifest: Mapping[str, Any]) -> Identity:
    from harness.report.model import RunInfo

    info = RunInfo(str(manifest.get("run_id") or run_dir.name), run_dir, str(manifest.get("status")), dict(manifest))
    host = info.host
    guest_of, scen = manifest.get("guest_of"), manifest.get("scenario")
    physical: Mapping[str, Any] = guest_of if isinstance(guest_of, dict) else host
    scenario: Mapping[str, Any] = scen if isinstance(scen, dict) else {}
    return Identity(info.run_id, str(run_dir), _iso(manifest.get("started")), info.status,
                    str(physical.get("hostname") or "?"), info.kernel, info.cgroup_version, info.cell,
                    info.in_guest, str(host.get("commit") or ""), bool(host.get("dirty")),
                    str(scenario.get("name") or ""))


def _iso(text: Any) -> str:
    """The manifest's start time as ISO 8601 in UTC (naive times read as UTC); "" when unreadable."""
    try:
        t = dt.datetime.fromisoformat(str(text))
    except ValueError:
        return ""
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return t.astimezone(dt.UTC).isoformat(timespec="seconds")


#: a version as backends record theirs ("1.8.1", "7.2.22", "1.1.5+ds1")
VERSION_TEXT = re.compile(r"^\d+(\.\d+)+\S*$")


def runtimes(manifest: Mapping[str, Any]) -> dict[str, str]:
    """backend -> the versions of what ran it, as its metadata records them (``crun 1.8.1``,
    ``libvirt 9.0.0 qemu 7.2.22``: every field holding a version); "" for backends whose runtime is
    the project itself or the host."""
    out = {}
    for backend, meta in (manifest.get("backends") or {}).items():
        if not isinstance(meta, dict):
            continue
        parts = []
        for k, v in sorted(meta.items()):
            if isinstance(v, str) and VERSION_TEXT.match(v):
                parts.append(f"{meta.get('runtime') or backend} {v}" if k == "version" else f"{k} {v}")
        out[str(backend)] = " ".join(parts)
    return out


def rows(run_dir: Path | str) -> list[dict[str, Any]]:
    """The run's history rows: one per series (ok, non-warm-up values; failed samples counted)."""
    import numpy as np

    from harness import results
    from harness.compare import wanted
    from harness.measure import catalogue
    from harness.stats.quantile import quantile_ci
    from harness.stats.runs import ABS, LOG, median_se, prepared
    from harness.stats.series import groups

    run_dir = Path(run_dir)
    manifest = results.read_manifest(run_dir)
    ident = asdict(identity(run_dir, manifest))
    versions = runtimes(manifest)
    df = results.load(run_dir, warmups=False, columns=wanted)  # a series' keys and values: nothing else
    if df.empty:
        return []
    if "accel" not in df.columns:
        df = df.assign(accel=None)
    acc = {b: str(m["accel"]) for b, m in (manifest.get("backends") or {}).items()
           if isinstance(m, dict) and m.get("accel")}
    missing = df["accel"].isna()
    if missing.any():  # rows that did not record their accelerator take the manifest's (as the report does)
        df = df.assign(accel=df["accel"].where(~missing, df["backend"].map(acc)))
    cat = catalogue()
    out = []
    for key, raw, g in groups(df):
        ok = g["status"].eq("ok") if "status" in g.columns else np.ones(len(g), dtype=bool)
        values = g.loc[ok, "value"].to_numpy(dtype=float, na_value=np.nan)
        values = values[np.isfinite(values)]
        direction = cat.direction(key.metric, key.unit)
        tick = cat.tick(key.metric, key.unit)
        lo, hi = quantile_ci(values, tick=tick) if values.size else (math.nan, math.nan)
        tested = prepared([values], direction)
        t = np.sort(tested[0]) if tested else np.array([])
        case = raw.get("case")
        out.append({**ident, "backend": key.backend, "accel": key.accel, "runtime": versions.get(key.backend, ""),
                    "measurement": key.measurement, "workload": key.workload, "metric": key.metric,
                    "unit": key.unit, "params": key.params_text, "case": None if case is None else str(case),
                    "n": int(values.size), "failed": int((~np.asarray(ok)).sum()),
                    "median": float(np.median(values)) if values.size else math.nan, "ci_lo": lo, "ci_hi": hi,
                    "direction": direction, "tick": tick, "resolution": cat.resolution(key.metric, key.unit),
                    "t_median": float(np.median(t)) if t.size else math.nan,
                    "t_se_log": float(median_se(t, LOG, tick, presorted=True)) if t.size else math.nan,
                    "t_se_abs": float(median_se(t, ABS, tick, presorted=True)) if t.size else math.nan})
    return out


#: the Arrow type of every column of a history row (the history's schema, version ``VERSION``)
TYPES = {**dict.fromkeys(IDENTITY, "string"), "in_guest": "bool", "dirty": "bool",
         **dict.fromkeys(SERIES, "string"), "n": "int64", "failed": "int64", "direction": "string",
         **dict.fromkeys(("median", "ci_lo", "ci_hi", "tick", "resolution", "t_median", "t_se_log", "t_se_abs"),
                         "double"),
         "added": "string"}
SCHEMA = "isobench/history"
VERSION = 1


def table(history_rows: list[dict[str, Any]], added: str) -> pa.Table:
    """Rows as the history's Arrow table, every column typed (``TYPES``), ``added`` the append's time."""
    import pyarrow as pa

    cols = {name: pa.array([r.get(name) if name != "added" else added for r in history_rows],
                           pa.type_for_alias(ty)) for name, ty in TYPES.items()}
    t = pa.table(cols)
    return t.replace_schema_metadata({"isobench": json.dumps({"schema": SCHEMA, "schema_version": VERSION})})
