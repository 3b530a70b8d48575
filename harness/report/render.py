"""The two renderings of a report: ``report.md`` (charts as relative PNG links) and a
self-contained ``report.html`` (PNGs embedded as base64 data URIs, no external files)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from harness.report.caveats import Warning_
from harness.report.findings import Finding
from harness.report.model import ReportData, accel_words

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd


@dataclass
class Figure:
    stem: str  # charts/<stem>.png and .svg
    title: str
    caption: str


@dataclass
class Table:
    caption: str
    frame: pd.DataFrame  # formatted for reading
    csv: str | None = None  # path relative to the report dir


@dataclass
class Section:
    title: str
    intro: str = ""
    figures: list[Figure] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    empty: str = ""  # shown instead when there is nothing else


@dataclass
class Document:
    title: str
    status: str
    meta: str  # one line: host, kernel, cgroup, accelerator, commit
    findings: list[Finding]
    headline: Figure | None
    warnings: dict[str, list[Warning_]]  # by backend (series label)
    failures: list[str]
    sections: list[Section]
    runs: pd.DataFrame
    hosts: pd.DataFrame
    csvs: list[str] = field(default_factory=list)  # paths relative to the report dir

    @property
    def n_warnings(self) -> int:
        return sum(len(w) for w in self.warnings.values())


def status_line(data: ReportData) -> str:
    states = sorted({r.status for r in data.runs})
    if states == ["completed"]:
        return "completed"
    detail = ", ".join(f"{r.run_id}: {r.status}" for r in data.runs)
    if "interrupted" in states:
        return f"interrupted ({detail}) — the run stopped before finishing; some sections may be incomplete"
    if "running" in states:
        return f"running ({detail}) — still being written when this report was built; it is partial"
    return detail


def runs_table(data: ReportData) -> pd.DataFrame:
    import pandas as pd

    out = []
    for r in data.runs:
        m = r.manifest
        scen = m.get("scenario")
        scen = scen.get("name") if isinstance(scen, dict) else scen
        counts = m.get("samples") if isinstance(m.get("samples"), dict) else None
        if counts is None and not data.rows.empty:
            mine = data.rows[data.rows["run"] == r.run_id]
            counts = mine["status"].value_counts().to_dict()
        out.append({"run": r.run_id, "status": r.status, "scenario": scen or "",
                    "started": m.get("started") or "", "ended": m.get("ended") or "",
                    "samples ok": (counts or {}).get("ok", 0), "samples failed": (counts or {}).get("failed", 0),
                    "host": r.hostname, "kernel": r.kernel})
    return pd.DataFrame(out)


#: the name of the fact "how the guests ran" (kvm/tcg per backend), apart from the host's accelerator
GUEST_ACCELERATOR = "guest accelerator"


def hosts_table(data: ReportData) -> pd.DataFrame:
    """Every scalar fact each manifest recorded about its host, one column per host."""
    import pandas as pd

    cols: dict[str, dict[str, str]] = {}
    for r in data.runs:
        facts: dict[str, str] = {}
        for k, v in r.host.items():
            if isinstance(v, dict):
                for k2, v2 in v.items():
                    if not isinstance(v2, (dict, list)):
                        facts[f"{k}.{k2}"] = str(v2)
            elif isinstance(v, list):
                facts[k] = ", ".join(map(str, v))
            else:
                facts[k] = str(v)
        acc = accel_words({b: {a} for b, a in r.accels().items()})
        # beside, not over, the host's own "accelerator" fact (a GPU, say): they are different things
        facts[GUEST_ACCELERATOR] = acc or "none"
        name = r.hostname if r.hostname not in cols else f"{r.hostname} ({r.run_id})"
        cols[name] = facts
    if not cols:
        return pd.DataFrame()
    keys = list(dict.fromkeys(k for f in cols.values() for k in f))
    return pd.DataFrame({"": keys, **{h: [f.get(k, "") for k in keys] for h, f in cols.items()}})


def meta_line(data: ReportData) -> str:
    """Host, kernel, cgroup version, accelerator and commit of each run, one line per run."""
    out = []
    for r in data.runs:
        acc = accel_words({b: {a} for b, a in r.accels().items()}) or "none (no VM backend)"
        commit = str(r.host.get("commit") or "?")[:10] + (" (dirty)" if r.host.get("dirty") else "")
        out.append(f"run {r.run_id} · host {r.hostname} · kernel {r.kernel} · cgroup v{r.cgroup_version} · "
                   f"{GUEST_ACCELERATOR}: {acc} · commit {commit}")
    return "\n".join(out)
