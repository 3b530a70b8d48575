"""Run-to-run variation learned from A/A runs, with where it was learned.

``isobench compare --calibrate RUN RUN …`` measures, per series, how much a run's median moves
between runs of one commit: the variance of the run medians (of their logs) with ``runs - 1``
degrees of freedom, and how much of it is the runs' own sampling error (``within``), so that a
comparison at another sample size replaces that part instead of adding to it.  compare uses
it as a prior with those degrees of freedom (``harness.stats.prior``), only when asked
(``--noise FILE``), and:

- refuses a calibration that contains a compared run (it would have been fitted to the very
  difference it is asked to judge);
- warns when it was learned on another host or kernel, or from another scenario;
- says whatever it applied, in the table's header.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness.metric import NONE, ONE
from harness.stats import MIN_N_CI
from harness.stats.prior import Prior, effective_series
from harness.stats.runs import LOG, median_se, on_scale, prepared, scale_of, sorted_runs
from runtimes.userpaths import read_regular

SCHEMA = "isobench/noise-3"
#: the format before provenance: read, with a warning that nothing about it can be checked
OLD_SCHEMA = "isobench/noise-2"


class CalibrationError(ValueError):
    """A calibration that cannot be used; str() is the one line shown."""


@dataclass(frozen=True)
class SeriesNoise:
    """One series' run-to-run variation."""

    var: float  # variance of a run's median (of its log: scale LOG) across the A/A runs
    df: int  # runs - 1
    within: float = math.nan  # the runs' mean sampling variance of their median, where known
    n: int = 0  # median samples per run
    scale: str = LOG
    largest_change: float = math.nan  # the largest change between two of the runs (for the reader)

    @property
    def run_sd(self) -> float:
        return math.sqrt(self.var)

    def prior(self) -> Prior:
        return Prior(self.var, self.df, self.within)

    def as_json(self) -> dict[str, Any]:
        return {"var": self.var, "df": self.df, "within": None if math.isnan(self.within) else self.within,
                "n": self.n, "scale": self.scale, "largest_change": self.largest_change,
                "run_sd": self.run_sd, "runs": self.df + 1}


@dataclass(frozen=True)
class Calibration:
    raw: Mapping[str, SeriesNoise]
    normalised: Mapping[str, SeriesNoise] = field(default_factory=dict)
    reference: str | None = None
    runs: tuple[str, ...] = ()  # the run ids it was learned from
    host: Mapping[str, Any] = field(default_factory=dict)  # hostname, kernel, cpu_model, commit
    scenario: Mapping[str, Any] = field(default_factory=dict)  # name, path, sha256 of its text
    effective_series: float | None = None  # how many independent series the runs' effects amount to
    path: str = ""
    provenance: bool = True  # False: an older file that recorded none

    def table(self, normalised: bool) -> Mapping[str, SeriesNoise]:
        return self.normalised if normalised else self.raw

    def refusal(self, run_ids: Sequence[str]) -> str | None:
        """Why this calibration must not judge these runs (it contains one of them), else None."""
        mine = {r.split()[0] for r in self.runs if r}
        shared = sorted(mine & set(run_ids))
        if shared:
            return (f"the calibration {self.path or ''} was learned from {', '.join(shared)}, a run being compared: "
                    "calibrate on other A/A runs of the base commit")
        return None

    def warnings(self, manifests: Sequence[Mapping[str, Any]]) -> list[str]:
        """What differs between where this calibration was learned and the compared runs."""
        if not self.provenance:
            return [f"{self.path}: an older calibration without provenance: its host and scenario are unchecked"]
        out = []
        for what, mine, theirs in (("host", self.host, [host_of(m) for m in manifests]),
                                   ("scenario", self.scenario, [scenario_of(m) for m in manifests])):
            keys = ("hostname", "kernel", "cpu_model") if what == "host" else ("name", "sha256")
            for key in keys:
                other = sorted({str(t.get(key)) for t in theirs} - {str(mine.get(key))})
                if other:
                    out.append(f"the calibration's {what} {key} is {mine.get(key)!s}, the compared runs' "
                               f"{', '.join(other)}: its run-to-run variation may not hold here")
        return out


def host_of(manifest: Mapping[str, Any]) -> dict[str, Any]:
    h = manifest.get("host") or {}
    return {k: h.get(k) for k in ("hostname", "kernel", "cpu_model", "commit")}


def scenario_of(manifest: Mapping[str, Any]) -> dict[str, Any]:
    s = manifest.get("scenario") or {}
    text = s.get("text") or ""
    return {"name": s.get("name"), "path": s.get("path"),
            "sha256": hashlib.sha256(text.encode()).hexdigest() if text else None}


RunSeries = Mapping[Any, tuple[Sequence[float] | np.ndarray, float]]  # series key -> (values, extra within variance)


def fit(runs: Sequence[RunSeries], direction: Callable[[Any], str], text: Callable[[Any], str],
        tick: Callable[[Any], float] = lambda _k: 0.0) -> tuple[dict[str, SeriesNoise], float | None]:
    """Per series present in two runs or more (with ``MIN_N_CI`` samples each): its noise; and the
    effective number of independent series among those present in every run."""
    per: dict[Any, list[tuple[np.ndarray, float]]] = {}
    for run in runs:
        for key, (values, extra) in run.items():
            d = direction(key)
            v = prepared([values], d)
            if d == NONE or not v or v[0].size < MIN_N_CI:
                continue
            per.setdefault(key, []).append((v[0], extra))
    out: dict[str, SeriesNoise] = {}
    residuals = []
    for key, rs in per.items():
        if len(rs) < 2:
            continue
        sorted_, med = sorted_runs([r for r, _ in rs])
        scale = scale_of(direction(key), med)
        m = on_scale(med, scale)
        within = [float(median_se(s, scale, tick(key), presorted=True)) ** 2 + e for s, (_, e) in zip(sorted_, rs,
                                                                                                      strict=True)]
        spread = float(m.max() - m.min())
        out[text(key)] = SeriesNoise(float(np.var(m, ddof=1)), len(rs) - 1, float(np.mean(within)),
                                     int(np.median([r.size for r, _ in rs])), scale,
                                     spread if scale != LOG or direction(key) == ONE else math.expm1(spread))
        if len(rs) == len(runs):
            residuals.append(m - m.mean())
    return out, (effective_series(residuals) if len(residuals) >= 2 else None)


def write(path: Path, cal: Calibration) -> None:
    data = {"schema": SCHEMA, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "runs": list(cal.runs),
            "reference": cal.reference, "host": cal.host, "scenario": cal.scenario,
            "effective_series": cal.effective_series,
            "raw": {k: v.as_json() for k, v in cal.raw.items()},
            "normalised": {k: v.as_json() for k, v in cal.normalised.items()}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")


def _noise(v: Mapping[str, Any]) -> SeriesNoise:
    if "var" in v:
        within = v.get("within")
        return SeriesNoise(float(v["var"]), int(v["df"]), math.nan if within is None else float(within),
                           int(v.get("n") or 0), str(v.get("scale") or LOG), float(v.get("largest_change", math.nan)))
    # isobench/noise-2: the sd of a run's log median and the number of runs, nothing else
    return SeriesNoise(float(v["run_sd"]) ** 2, int(v["runs"]) - 1, largest_change=float(v.get("largest_change",
                                                                                                math.nan)))


def read(path: Path) -> Calibration:
    """A calibration file (this format or the one before it); ``CalibrationError`` with one line."""
    try:
        data = json.loads(read_regular(path))
    except OSError as e:  # a FIFO or /dev/zero is refused, not read forever
        raise CalibrationError(f"cannot read the calibration {path}: {e.strerror}") from e
    except ValueError as e:
        raise CalibrationError(f"cannot read the calibration {path}: {e}") from e
    schema = data.get("schema") if isinstance(data, dict) else None
    if schema not in (SCHEMA, OLD_SCHEMA):
        raise CalibrationError(f"{path}: not an isobench noise file (schema {SCHEMA}); run --calibrate again")
    try:
        raw = {k: _noise(v) for k, v in data["raw"].items()}
        norm = {k: _noise(v) for k, v in (data.get("normalised") or {}).items()}
    except (KeyError, TypeError, ValueError) as e:
        raise CalibrationError(f"{path}: a malformed series entry ({e}); run --calibrate again") from e
    return Calibration(raw, norm, data.get("reference"), tuple(str(r) for r in data.get("runs") or ()),
                       data.get("host") or {}, data.get("scenario") or {}, data.get("effective_series"), str(path),
                       schema == SCHEMA)
