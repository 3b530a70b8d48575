"""The report's tables: per-measurement statistics, warnings, and ratios of medians.

Every table exists twice: raw numbers in CSV (for scripts) and formatted
numbers for people (Markdown/HTML).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import runtimes
from harness.measure import catalogue
from harness.report import style
from harness.report.model import ReportData
from harness.stats.ratio import ratio_of_medians
from harness.stats.series import CASE, param_columns

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

#: startup metric a floor_* measurement is compared with
FLOOR_METRIC = "launch_to_ready"


def _single_shot(measurement: str) -> bool:
    """Its grid cells are usually measured once: "too few samples" is no news there."""
    info = catalogue().info(measurement)
    return info is not None and info.single_shot


def _peer_metric(metric: str) -> bool:
    """Worth a peer ratio (declared ``peer``; not metrics set by the case, like cpu_expected,
    nor the *_overhead ones, which sit near 0 for a lean runtime so that a ratio means nothing)."""
    return catalogue().is_peer_metric(metric)


def params_text(row: Any, columns: list[str]) -> str:
    return " ".join(f"{c.removeprefix('param_')}={style.fmt_param(row[c])}" for c in columns
                    if not style.is_missing(row[c]))


def used_params(df: pd.DataFrame) -> list[str]:
    return [c for c in param_columns(df) if df[c].notna().any()]


def display(summary: pd.DataFrame) -> pd.DataFrame:
    """The summary formatted for reading: one params column, numbers rounded, CI as one cell."""
    import pandas as pd

    if summary.empty:
        return pd.DataFrame()
    pcols = used_params(summary)
    out = pd.DataFrame({
        "series": summary["series"],
        "workload": summary["workload"],
        "params": [params_text(r, pcols) for _, r in summary.iterrows()],
        "metric": summary["metric"],
        "unit": summary["unit"],
        "n": summary["n"].astype(int),
        "median": summary["median"].map(style.fmt),
        "95% CI": [f"{style.fmt(lo)} – {style.fmt(hi)}" if not style.is_missing(lo) else ""
                   for lo, hi in zip(summary["ci_lo"], summary["ci_hi"], strict=True)],
        "p90": summary["p90"].map(style.fmt),
        "p99": summary["p99"].map(style.fmt),
        "cv": [f"{c:.1%}" if not style.is_missing(c) else "" for c in summary["cv"]],
        "failed": summary["failed"].astype(int),
        "warnings": summary["warnings"].fillna(""),
    })
    if not pcols:
        out = out.drop(columns=["params"])
    return out


def for_measurement(data: ReportData, measurement: str) -> pd.DataFrame:
    s = data.summary
    if s.empty:
        return s
    s = s[s["measurement"] == measurement]
    return _sorted(s)


def _sorted(s: pd.DataFrame) -> pd.DataFrame:
    if s.empty:
        return s
    # the registry's index as a number: as text, "(10, 'qemu')" would sort before "(2, 'container')"
    order = s.assign(_rank=[style.backend_rank(b)[0] for b in s["backend"]])
    keys = ["metric", "workload", *used_params(s), "_rank", "series"]
    return order.sort_values(keys, kind="stable").drop(columns="_rank")


def warnings_list(data: ReportData) -> list[str]:
    """One line per series, case and warning: the metrics it concerns folded into the line."""
    s = data.summary
    if s.empty:
        return []
    s = _sorted(s[s["warnings"].fillna("") != ""])
    pcols = used_params(s) if not s.empty else []
    grouped: dict[tuple[str, str, str], list[str]] = {}
    for _, r in s.iterrows():
        p = params_text(r, pcols)
        where = f"{r['series']} · {r['measurement']}/{r['workload']}{' ' + p if p else ''}"
        for w in str(r["warnings"]).split("; "):
            # one observation per cell is the design of the grid measurements, not an accident
            if w.startswith("too few samples") and _single_shot(r["measurement"]):
                continue
            grouped.setdefault((where, w, ""), []).append(str(r["metric"]))
    return [f"{where}: {w} — {', '.join(metrics)}" for (where, w, _), metrics in
            sorted(grouped.items(), key=lambda kv: (kv[0][0], kv[0][1]))]


def failures_list(data: ReportData) -> list[str]:
    """Each distinct error of the failed samples, with how often and where it happened."""
    r = data.rows
    if r.empty or "error" not in r.columns:
        return []
    failed = r[r["status"] != "ok"]
    out = []
    for (series, m, wl, err), g in failed.groupby(["series", "measurement", "workload", failed["error"].fillna("")],
                                                  sort=True):
        out.append(f"{series} · {m}/{wl}: {len(g)}× {err or 'failed (no error recorded)'}")
    return out


def _ok(data: ReportData) -> pd.DataFrame:
    r = data.rows
    return r[r["status"] == "ok"] if not r.empty else r


def _ratio_row(a: Any, b: Any) -> dict[str, Any]:
    ratio, lo, hi = ratio_of_medians(a, b)
    return {"ratio": ratio, "ci_lo": lo, "ci_hi": hi}


def peer_ratios(data: ReportData) -> pd.DataFrame:
    """median(peer) / median(reference) per metric, for each backend declared ``peer_of`` another."""
    import pandas as pd

    rows = _ok(data)
    if rows.empty:
        return pd.DataFrame()
    pcols = used_params(rows)
    if CASE not in rows.columns:  # a run stored before rows carried their case
        rows = rows.assign(**{CASE: None})
    keys = ["measurement", "workload", "metric", "unit", "split", *pcols, CASE]  # each case's rows
    out = []
    for peer in sorted(rows["backend"].unique(), key=style.backend_rank):
        ref = runtimes.peer_reference(peer)
        if ref is None or ref not in set(rows["backend"]):
            continue
        ref_rows = rows[rows["backend"] == ref]
        mine = rows[(rows["backend"] == peer) & rows["metric"].astype(str).map(_peer_metric)]
        for key, g in mine.groupby(keys, dropna=False):
            k = dict(zip(keys, key, strict=True))
            m = ref_rows
            for c, v in k.items():
                m = m[m[c].isna()] if style.is_missing(v) else m[m[c] == v]
            if m.empty:
                continue
            k.pop(CASE)
            out.append({"peer": g["series"].iloc[0], "reference": m["series"].iloc[0], **k,
                        "n_peer": len(g), "n_ref": len(m), **_ratio_row(g["value"], m["value"])})
    return pd.DataFrame(out)


def floor_ratios(data: ReportData) -> pd.DataFrame:
    """How far startup sits above each measured floor: median(launch_to_ready) / median(floor_*).

    A floor is compared with the launch→ready of its own backend (``harness.floor`` writes
    rows of the backend declared ``floor_target``), or with each backend declared
    ``floor_compared`` when its backend has no startup rows.
    ``floor_total`` comes first: it is the floor of the whole launch.
    """
    import pandas as pd

    rows = _ok(data)
    if rows.empty:
        return pd.DataFrame()
    floors = rows[rows["metric"].astype(str).str.startswith("floor_")]
    metric = FLOOR_METRIC
    refs = [d.name for d in runtimes.declarations() if d.floor_compared]
    out = []
    for (backend, wl, fmetric, split), g in floors.groupby(["backend", "workload", "metric", "split"],
                                                          dropna=False):
        startup = rows[rows["metric"] == metric]
        if not style.is_missing(split):
            startup = startup[startup["split"] == split]
        own = backend in set(startup["backend"])
        for ref in [backend] if own else refs:
            m = startup[startup["backend"] == ref]
            same = m[m["workload"] == wl]
            m = same if not same.empty else m[m["workload"] == "noop"]
            if m.empty:
                continue
            out.append({"floor": f"{g['series'].iloc[0]} · {fmetric}", "workload": wl,
                        "floor median (ms)": float(g["value"].median()),
                        "startup": f"{m['series'].iloc[0]} · {metric} ({m['workload'].iloc[0]})",
                        "startup median (ms)": float(m["value"].median()),
                        "n_floor": len(g), "n_startup": len(m), **_ratio_row(m["value"], g["value"])})
            if out[-1]["startup median (ms)"] < out[-1]["floor median (ms)"]:  # a floor a launch beats
                out[-1].update(ratio=math.nan, ci_lo=math.nan, ci_hi=math.nan,
                               invalid="floor invalid: the measured median is below it")
    df = pd.DataFrame(out)
    if df.empty:
        return df
    first = df["floor"].str.endswith("floor_total")
    return pd.concat([df[first], df[~first]], ignore_index=True)


def display_ratios(df: pd.DataFrame) -> pd.DataFrame:
    """Ratio tables for reading: ``ratio`` as ×, the interval as one cell, params folded."""
    if df.empty:
        return df
    df = df.copy()
    pcols = [c for c in df.columns if c.startswith("param_")]
    if pcols:
        df.insert(int(df.columns.get_loc(pcols[0])), "params",  # type: ignore[arg-type]
                  [params_text(r, pcols) for _, r in df.iterrows()])
        df = df.drop(columns=pcols)
    df["ratio"] = [f"{r:.2f}×" if not style.is_missing(r) and math.isfinite(r) else "" for r in df["ratio"]]
    if "invalid" in df.columns:  # a floor a median beats: the statement replaces the ratio
        df["ratio"] = [w if isinstance(w, str) else r for r, w in zip(df["ratio"], df.pop("invalid"), strict=True)]
    df["95% CI"] = [f"{lo:.2f} – {hi:.2f}" if not style.is_missing(lo) else ""
                    for lo, hi in zip(df.pop("ci_lo"), df.pop("ci_hi"), strict=True)]
    for c in df.columns:
        if "median" in c:
            df[c] = df[c].map(style.fmt)
    if "split" in df.columns:  # already part of the series labels
        df = df.drop(columns=["split"])
    return df
