"""What a report is built from: the runs' manifests, their rows, series labels, the footnote.

Several run directories merge into one comparison.  When they come from
different hosts (or the same host on different kernels) every series is keyed
by backend *and* host (or kernel), so ``container @ hostA`` and
``container @ hostB`` are separate lines of the same colour.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import runtimes
from harness import results
from harness.stats import describe, series
from harness.store.frame import constant

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import pandas as pd

#: how series are told apart across runs: auto picks cell (kernel × cgroup version) for runs from
#: ``isobench matrix`` guests, else host, then kernel, else merges
SPLITS = ("auto", "cell", "host", "kernel", "run", "none")


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    path: Path
    status: str  # completed | interrupted | running | failed ...
    manifest: dict[str, Any]

    @property
    def host(self) -> dict[str, Any]:
        return dict(self.manifest.get("host") or {})

    @property
    def hostname(self) -> str:
        """The host's name: its name in the fleet's inventory for a run ``isobench fleet`` brought
        back (what the lab calls the machine), else the hostname the run recorded."""
        fleet = self.manifest.get("fleet")
        if isinstance(fleet, dict) and fleet.get("host"):
            return str(fleet["host"])
        return str(self.host.get("hostname") or "?")

    @property
    def in_fleet(self) -> bool:
        return isinstance(self.manifest.get("fleet"), dict)

    @property
    def kernel(self) -> str:
        return str(self.host.get("kernel") or "?")

    @property
    def cgroup_version(self) -> str:
        cg = self.host.get("cgroup")
        v = cg.get("version") if isinstance(cg, dict) else cg
        return str(v) if v not in (None, "") else "?"

    @property
    def cell(self) -> str:
        """kernel × cgroup version: a matrix guest's own label, else from the host metadata."""
        g = self.manifest.get("guest")
        if isinstance(g, dict) and g.get("kernel_label"):
            return f"{g['kernel_label']} cgroup {g.get('cgroup_mode', 'v' + self.cgroup_version)}"
        return f"{self.kernel} cgroup v{self.cgroup_version}"

    @property
    def in_guest(self) -> bool:
        return isinstance(self.manifest.get("guest"), dict)

    def accels(self) -> dict[str, str]:
        """backend -> accelerator as the manifest recorded it (only backends that have one)."""
        out = {}
        for name, meta in (self.manifest.get("backends") or {}).items():
            if isinstance(meta, dict) and meta.get("accel"):
                out[name] = str(meta["accel"])
        return out


#: columns of a run's rows no table or chart reads: where in the run a step ran and the host's state
#: then (``docs/statistics.md``, order of samples); left out of ``ReportData.rows``, a tenth of its memory
UNREAD = ("position", "predecessor")
UNREAD_PREFIXES = ("cond_",)


@dataclass
class ReportData:
    runs: list[RunInfo]
    rows: pd.DataFrame  # every non-warm-up row (less ``UNREAD``), with a "series" and a "split" column
    split: str | None  # the column that separates series across runs, or None
    summary: pd.DataFrame = field(init=False)

    def __post_init__(self) -> None:
        # "split" is always a key (all-missing without a split) so every table has the column
        from harness.measure import catalogue

        self.summary = describe.summary_table(self.rows, split=True, tick=catalogue().tick)
        if self.summary.empty:
            self.summary["series"] = []
            return
        how = image_labels(self.rows)
        self.summary.insert(0, "series", [
            series.label(r["backend"], r["accel"], r["split"] if self.split else None,
                         how.get((r["backend"], r["workload"])))
            for _, r in self.summary.iterrows()])

    def of(self, measurement: str, columns: Sequence[str] | None = None) -> pd.DataFrame:
        """The ok rows of one measurement (of a ``timed`` one not those timed inside an emulated matrix
        guest, whose clock runs under TCG; their tables still show them, labelled emulated);
        ``columns``: only these (a chart that reads a few columns of a million rows copies only those)."""
        from harness.measure import catalogue

        r = self.rows
        if r.empty:
            return r if columns is None else r[list(columns)]
        keep = (r["measurement"] == measurement) & (r["status"] == "ok")
        info = catalogue().info(measurement)
        if info is not None and info.timed and "emulated_guest" in r.columns:
            keep &= ~r["emulated_guest"].fillna(False).astype(bool)
        return r.loc[keep] if columns is None else r.loc[keep, list(columns)]

    def accels(self, run: RunInfo | None = None) -> dict[str, set[str]]:
        """backend -> accelerators, from the manifests and the rows (of one run, or all)."""
        out: dict[str, set[str]] = {}
        for r in [run] if run else self.runs:
            for b, a in r.accels().items():
                out.setdefault(b, set()).add(a)
        rows = self.rows
        if not rows.empty and run is not None:
            rows = rows[rows["run"] == run.run_id]
        if not rows.empty:
            for key, _ in rows.dropna(subset=["accel"]).groupby(["backend", "accel"]):
                backend, accel = key  # a two-key groupby yields pairs
                out.setdefault(str(backend), set()).add(str(accel))
        return out

    def footnote(self, notes: Sequence[str] = ()) -> str:
        """Host, kernel, cgroup version and accelerator of every run, for the bottom of a chart."""
        seen: dict[tuple[str, str, str], dict[str, set[str]]] = {}
        hw: dict[tuple[str, str, str], str] = {}
        for run in self.runs:
            key = (run.hostname, run.kernel, run.cgroup_version)
            acc = seen.setdefault(key, {})
            for b, a in self.accels(run).items():
                acc.setdefault(b, set()).update(a)
            cpu, cores = run.host.get("cpu_model"), run.host.get("cores")
            hw[key] = ", ".join(str(x) for x in (cpu, f"{cores} cores" if cores else None) if x)
        lines = []
        for key, acc in seen.items():
            host, kernel, cg = key
            words = accel_words(acc)
            lines.append(f"host {host}" + (f" ({hw[key]})" if hw[key] else "") + f" · kernel {kernel}"
                         f" · cgroup v{cg} · accelerator: {words or 'none (no VM backend)'}")
        return "\n".join(lines + list(notes))


def accel_words(accels: dict[str, set[str]]) -> str:
    parts = []
    for backend in sorted(accels):
        for a in sorted(accels[backend]):
            words = series.accel_words(backend, a)
            parts.append(f"{backend}: emulated (TCG)" if a == series.EMULATED else f"{backend}: {words or a.upper()}")
    return ", ".join(parts)


def choose_split(runs: Sequence[RunInfo], by: str = "auto") -> str | None:
    if by == "none":
        return None
    if by in ("cell", "host", "kernel", "run"):
        return by
    if any(r.in_fleet for r in runs) and len({r.hostname for r in runs}) > 1:  # a fleet: its hosts
        return "host"
    if any(r.in_guest for r in runs) and len({r.cell for r in runs}) > 1:
        return "cell"
    if len({r.hostname for r in runs}) > 1:
        return "host"
    if len({r.kernel for r in runs}) > 1:
        return "kernel"
    return None


def load(run_dirs: Sequence[Path | str], by: str = "auto") -> ReportData:
    """Read the runs (raises ``results.ResultsError`` for a directory that is not a run); a fleet
    directory (``isobench fleet``) stands for the runs of its completed hosts."""
    import pandas as pd

    from harness.fleet.manifest import expand

    if by not in SPLITS:
        raise ValueError(f"unknown split {by!r} (one of: {', '.join(SPLITS)})")
    runs = []
    for d in expand(run_dirs):
        m = results.read_manifest(d)
        runs.append(RunInfo(str(m.get("run_id") or Path(d).name), Path(d), str(m.get("status")), m))
    if len({r.run_id for r in runs}) != len(runs):
        raise ValueError("the same run was given twice")
    frames = []
    for run in runs:
        df = results.load(run.path, warmups=False)  # every table and chart leaves them out
        if df.empty:
            continue
        df = df.drop(columns=[c for c in df.columns if c in UNREAD or c.startswith(UNREAD_PREFIXES)])
        if "accel" not in df.columns:
            df["accel"] = None
        # rows that did not record their accelerator take the manifest's
        acc = run.accels()
        missing = df["accel"].isna()
        df.loc[missing, "accel"] = df.loc[missing, "backend"].map(acc)
        df["run"] = constant(df.index, run.run_id)
        df["host"] = constant(df.index, run.hostname)  # a fleet's inventory name rather than the machine's hostname
        df["cell"] = constant(df.index, run.cell)
        df["emulated_guest"] = run.in_guest and "tcg" in acc.values()
        frames.append(df)
    if len(frames) == 1:
        rows = frames[0]  # one run: no copy of its rows
    else:
        rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
            columns=["run_id", "backend", "workload", "measurement", "metric", "value", "unit", "status",
                     "warmup", "accel", "host", "kernel", "run"])
    split = choose_split(runs, by)
    rows["split"] = rows[split] if split else None
    rows["series"] = pd.Series(_labels(rows, split is not None), index=rows.index, dtype=object)
    return ReportData(runs, rows.reset_index(drop=True), split)


def _labels(rows: pd.DataFrame, split: bool) -> np.ndarray:
    """Each row's series label, made once per (backend, accelerator, split[, workload]), not once per row."""
    import numpy as np

    if rows.empty:
        return np.array([], dtype=object)
    how = image_labels(rows)
    keys = ["backend", "accel", "split", *(["workload"] if how else [])]
    g = rows[keys].groupby(keys, dropna=False, sort=False)
    firsts = rows[keys].loc[g.head(1).index]
    codes = g.ngroup().to_numpy()
    # ngroup numbers the groups in order of first appearance (sort=False), as head(1) lists them
    labels = np.array([series.label(r["backend"], r["accel"], r["split"] if split else None,
                                    how.get((r["backend"], r["workload"])) if how else None)
                       for _, r in firsts.iterrows()], dtype=object)
    return labels[codes]


def image_labels(rows: pd.DataFrame) -> dict[tuple[Any, Any], str]:
    """(backend, workload) -> how the backend ran that image workload, for the backends whose
    declaration says (``image_label``: bare's rows of an image read "bare (chroot)")."""
    if "image" not in rows.columns or rows.empty:
        return {}
    out = {}
    for b, w in rows.loc[rows["image"].notna(), ["backend", "workload"]].drop_duplicates().itertuples(index=False):
        how = runtimes.declaration(str(b)).image_label if runtimes.known(str(b)) else None
        if how:
            out[(b, w)] = how
    return out
