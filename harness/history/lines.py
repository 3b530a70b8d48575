"""What a history report draws: the rows a query selects, cut into lines, each with its steps.

A line is one series (backend, accelerator, measurement, workload, metric, unit, case) at one
place -- by default a host and its cgroup version (a matrix guest: its kernel × cgroup cell),
so a host's kernel update is an event *within* its line that a step can be laid at; with
``split="kernel"`` each kernel is a line of its own ("CFS on 6.1 vs 6.12 vs 6.12-rt").  Its runs
are in the order they started; ``by`` says which neighbours are one group (``steps``).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from harness.errors import UserError
from harness.history import BYS, SPLITS, WINDOW, record
from harness.history.steps import Point, Step, detect
from harness.stats import ALPHA, THRESHOLD

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

#: what may be filtered with ``--where KEY=GLOB``
WHERE_KEYS = tuple(k for k in (*record.IDENTITY, *record.SERIES) if k != "path")
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")
#: the series columns that make a line (with its place)
LINE_KEYS = ("backend", "accel", "measurement", "workload", "metric", "unit", "params", "case")


@dataclass(frozen=True)
class Query:
    metrics: tuple[str, ...] = ()  # empty: every headline metric the history holds
    since: str | None = None  # a date (2026-01-31) or a commit (a prefix of its sha)
    last: int | None = None  # the last N runs of each line
    by: str = "commit"
    split: str = "host"
    where: tuple[tuple[str, str], ...] = ()  # (column, glob)
    window: int = WINDOW
    alpha: float = ALPHA
    threshold: float = THRESHOLD


@dataclass
class Line:
    metric: str
    label: str  # the series and its place, as a table names it
    direction: str
    unit: str
    rows: pd.DataFrame  # its runs, oldest first
    points: list[Point] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)


def parse_where(items: Sequence[str]) -> tuple[tuple[str, str], ...]:
    out = []
    for item in items:
        key, sep, glob = item.partition("=")
        if not sep or key not in WHERE_KEYS:
            raise UserError(f"--where {item!r}: KEY=GLOB with KEY one of {', '.join(WHERE_KEYS)}")
        out.append((key, glob))
    return tuple(out)


def headline_metrics() -> list[str]:
    from harness.measure import catalogue

    return [m.name for m in catalogue().headline()]


def select(df: pd.DataFrame, q: Query) -> pd.DataFrame:
    """The rows of the query's metrics, places and time (``UserError`` for a ``since`` that matches nothing)."""
    metrics = list(q.metrics) or headline_metrics()
    df = df[df["metric"].isin(metrics)]
    for key, glob in q.where:
        df = df[[fnmatch.fnmatchcase("" if v is None else str(v), glob) for v in df[key]]]
    if q.since:
        if DATE.match(q.since):
            df = df[df["started"] >= q.since]
        else:
            hits = df.loc[df["commit"].fillna("").str.startswith(q.since), "started"]
            if hits.empty:
                raise UserError(f"--since {q.since}: no run of a commit beginning so in this history "
                                "(a date is written 2026-01-31)")
            df = df[df["started"] >= hits.min()]
    return df


def group_label(row: pd.Series, by: str) -> str:
    """The neighbours a run cannot be told apart from: its commit, kernel, day, or itself."""
    if by == "commit":
        commit = str(row.get("commit") or "")
        return commit[:10] + ("+dirty" if row.get("dirty") else "") if commit else f"run {row['run_id']}"
    if by == "kernel":
        return str(row["kernel"])
    if by == "date":
        return str(row["started"])[:10] or f"run {row['run_id']}"
    return f"{row['run_id']} {row['started']}"


def place(row: pd.Series, split: str) -> str:
    where = f"{row['host']} " + (f"guest {row['cell']}" if row.get("in_guest") else f"cgroup v{row['cgroup']}")
    if split == "kernel" and not row.get("in_guest"):
        where += f" kernel {row['kernel']}"
    return where


def label(row: pd.Series, split: str) -> str:
    from harness.stats.series import label as series_label

    what = f"{row['measurement']}/{row['workload']}" + (f" {row['params']}" if row.get("params") else "")
    return f"{series_label(row['backend'], row.get('accel'))} · {what} · {place(row, split)}"


def lines(df: pd.DataFrame, q: Query) -> list[Line]:
    """Every line of the selected rows with its points and steps, by metric, then label."""
    import pandas as pd

    if q.by not in BYS or q.split not in SPLITS:
        raise UserError(f"by must be one of {', '.join(BYS)} and split one of {', '.join(SPLITS)}")
    df = select(df, q)
    if df.empty:
        return []
    df = df.assign(_place=[place(r, q.split) for _, r in df.iterrows()])
    out = []
    for _, g in df.groupby([*LINE_KEYS, "_place"], dropna=False, sort=False):
        g = g.sort_values(["started", "run_id"], kind="stable")
        if q.last:
            g = g.tail(q.last)
        first = g.iloc[0]
        points = [Point(group_label(r, q.by), float(r["t_median"]), float(r["t_se_log"]), float(r["t_se_abs"]),
                        int(r["n"]), float(r["median"])) for _, r in g.iterrows()]
        steps = detect(points, str(first["direction"]), window=q.window, alpha=q.alpha, threshold=q.threshold,
                       resolution=float(first["resolution"]) if pd.notna(first["resolution"]) else 0.0)
        out.append(Line(str(first["metric"]), label(first, q.split), str(first["direction"]), str(first["unit"]),
                        g.reset_index(drop=True), points, steps))
    order = {m: i for i, m in enumerate(list(q.metrics) or headline_metrics())}
    return sorted(out, key=lambda ln: (order.get(ln.metric, len(order)), ln.label))


def changed(line: Line, step: Step) -> str:
    """What differs between the last run before a step and the first after it: commit, kernel, runtime."""
    a, b = line.rows.iloc[step.index - 1], line.rows.iloc[step.index]
    parts = []
    for col, name in (("commit", "commit"), ("kernel", "kernel"), ("runtime", "runtime")):
        x, y = str(a.get(col) or "?"), str(b.get(col) or "?")
        if x != y:
            short = (lambda s: s[:10]) if col == "commit" else (lambda s: s)
            parts.append(f"{name} {short(x)} → {short(y)}")
    return ", ".join(parts) or "nothing recorded changed (same commit, kernel and runtime)"
