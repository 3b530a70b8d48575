"""An A/B comparison with a known false-alarm rate (``isobench compare``: ``harness.commands.compare``).

Every series present on both sides (backend, measurement, workload, metric,
unit, params) gets a verdict from ``harness.stats.abtest``: ``regression``,
``improvement``, ``equivalent`` (TOST within the margin) or ``inconclusive``
(too few samples, or the data cannot tell).  Metrics without a better
direction are listed with ``--all`` and never judged.

- BASE and NEW may each be several runs, comma-separated (``A1,A2,A3``): they
  are pooled with the run as a level, so run-to-run variance counts.
- ``--normalise`` divides every sample by the median of the same series of the
  run's reference backend (``reference`` in the scenario, or ``--normalise
  BACKEND``): host drift moves all backends of a run together and cancels.
- ``--calibrate RUN RUN …`` learns from A/A runs of one commit how much a
  series' median moves from run to run (the standard deviation of its log,
  ``--noise`` file); compare adds that variance to each test, so two runs that
  differ only by the host's state are no regression (``abtest`` module doc).
"""

from __future__ import annotations

import json
import math
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.metric import HIGHER, LOWER, NONE, ONE
from harness.stats import ALPHA, BOOTSTRAPS, MIN_N_CI, THRESHOLD
from harness.stats.series import SeriesKey
from runtimes.userpaths import read_regular

__all__ = ["HIGHER", "LOWER", "NONE", "ONE", "compare", "direction", "calibrate"]

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from harness.stats import abtest

NOISE_FILE = Path("results/noise.json")
NOISE_SCHEMA = "isobench/noise-2"


def direction(name: str, unit: str | None = None) -> str:
    from harness.measure import catalogue

    return catalogue().direction(name, unit)


@dataclass(frozen=True)
class Row:
    series: SeriesKey
    base: list[float]
    new: list[float]
    direction: str
    base_median: float
    new_median: float
    change: float  # relative change of the median; for ONE, change of |median - 1|
    lo: float  # (1 - 2 alpha) interval of the change
    hi: float
    p: float  # uncorrected
    q: float  # adjusted across the judged series (BH or Holm)
    margin: float
    verdict: str  # regression | improvement | equivalent | inconclusive | not judged | only in base|new
    why: str = ""
    runs: tuple[int, int] = (1, 1)
    run_sd: float | None = None  # the run-to-run standard deviation from --calibrate, where known
    detectable: float = math.nan  # the smallest change this comparison would find (abtest.detectable)

    @property
    def key(self) -> dict[str, Any]:
        """backend, measurement, workload, metric, unit and params (as text), for a table."""
        return self.series.fields()


def series(df: pd.DataFrame) -> dict[SeriesKey, list[float]]:
    """ok, non-warm-up values per series."""
    from harness.stats.series import groups

    if df.empty:
        return {}
    df = df[(df["status"] == "ok") & ~df["warmup"].fillna(False).astype(bool)]
    return {key: [float(v) for v in g["value"]] for key, _, g in groups(df)}


#: units normalised by --normalise: host drift scales durations; memory and ratios keep their values
NORMALISED_UNITS = {"ms"}


def normalised(s: Mapping[SeriesKey, list[float]], reference: str) -> dict[SeriesKey, list[float]]:
    """Each duration series divided by the median of the reference backend's same series in the
    same run; durations without a reference counterpart (or a zero one) and the reference's own
    durations drop out; other units pass unchanged."""
    import numpy as np

    def case(key: SeriesKey) -> SeriesKey:
        return key._replace(backend="", accel=None)

    refs = {case(k): v for k, v in s.items() if k.backend == reference}
    out: dict[SeriesKey, list[float]] = {}
    for key, values in s.items():
        if key.unit not in NORMALISED_UNITS:
            out[key] = values
            continue
        if key.backend == reference:
            continue
        ref = refs.get(case(key))
        if not ref or np.median(ref) == 0:
            continue
        m = float(np.median(ref))
        out[key] = [v / m for v in values]
    return out


def reference_of(manifest: Mapping[str, Any]) -> str | None:
    """The scenario's ``reference`` backend as the runner recorded it (runs before it did: read
    from the scenario text stored in the manifest)."""
    scenario = manifest.get("scenario") or {}
    if "reference" in scenario:
        ref = scenario["reference"]
        return ref if isinstance(ref, str) else None
    text = scenario.get("text") or ""
    try:
        ref = tomllib.loads(text).get("scenario", {}).get("reference")
    except tomllib.TOMLDecodeError:
        return None
    return ref if isinstance(ref, str) else None


def side(frames: Iterable[pd.DataFrame], reference: str | None = None) -> dict[SeriesKey, list[list[float]]]:
    """Per series, one list of values per run (runs normalised first when ``reference`` is set)."""
    out: dict[SeriesKey, list[list[float]]] = {}
    for df in frames:
        s = series(df)
        for key, values in (normalised(s, reference) if reference else s).items():
            out.setdefault(key, []).append(values)
    return out


def compare(base: pd.DataFrame | list[pd.DataFrame], new: pd.DataFrame | list[pd.DataFrame],
            threshold: float = THRESHOLD, alpha: float = ALPHA, *,
            noise: Mapping[str, float] | None = None, correction: str = "bh",
            reference: str | None = None, bootstraps: int = BOOTSTRAPS) -> list[Row]:
    """A verdict per series; p-values of the judged series are adjusted together."""
    from harness.stats import abtest

    sb = side(base if isinstance(base, list) else [base], reference)
    sn = side(new if isinstance(new, list) else [new], reference)
    noise = noise or {}
    keys = sorted(set(sb) | set(sn), key=lambda k: tuple(str(x) for x in k))
    effects: dict[SeriesKey, abtest.Effect] = {}
    for key in keys:
        if key in sb and key in sn and direction(key.metric, key.unit) != NONE:
            effects[key] = abtest.measure(sb[key], sn[key], direction(key.metric, key.unit), alpha=alpha,
                                          bootstraps=bootstraps, run_sd=noise.get(key.text()))
    judged = [k for k, e in effects.items() if e.enough]
    qs = dict(zip(judged, abtest.adjust([effects[k].p for k in judged], correction), strict=True))
    rows = []
    for key in keys:
        rows.append(_row(key, sb.get(key, []), sn.get(key, []), effects.get(key), qs.get(key, math.nan),
                         threshold, alpha, noise.get(key.text())))
    return rows


def _row(k: SeriesKey, b_runs: list[list[float]], n_runs: list[list[float]], e: abtest.Effect | None, q: float,
         margin: float, alpha: float, run_sd: float | None = None) -> Row:
    import numpy as np

    from harness.stats import abtest

    d = direction(k.metric, k.unit)
    b = [v for r in b_runs for v in r]
    n = [v for r in n_runs for v in r]
    nan = math.nan
    bm = float(np.median(b)) if b else nan
    nm = float(np.median(n)) if n else nan
    runs = (len(b_runs), len(n_runs))
    if not b or not n:
        return Row(k, b, n, d, bm, nm, nan, nan, nan, nan, nan, margin,
                   "only in new" if not b else "only in base", runs=runs)
    if e is None:
        return Row(k, b, n, d, bm, nm, nan, nan, nan, nan, nan, margin, "not judged", "no better direction",
                   runs=runs)
    from harness.measure import catalogue

    verdict, why = abtest.verdict(e, q, d, margin, alpha, catalogue().resolution(k.metric, k.unit))
    return Row(k, b, n, d, bm, nm, e.change, e.lo, e.hi, e.p, q, margin, verdict, why, runs=runs, run_sd=run_sd,
               detectable=abtest.detectable(e, d, alpha))


def calibrate(runs: list[pd.DataFrame], reference: str | None = None) -> dict[str, dict[str, float]]:
    """Per series, from A/A runs of one commit: ``run_sd``, the standard deviation of the log of a
    run's median (of its median distance from 1 for ONE metrics) across the runs, and the largest
    change seen between two of them (for the reader)."""
    import numpy as np

    from harness.stats import abtest

    sides = [side([df], reference) for df in runs]
    medians: dict[SeriesKey, list[float]] = {}
    for s in sides:
        for key, values in s.items():
            d = direction(key.metric, key.unit)
            v = abtest.prepared(values, d)  # the run's values as the test sees them
            if d == NONE or not v or v[0].size < MIN_N_CI:
                continue
            m = float(np.median(v[0]))
            if d == ONE or m > 0:
                medians.setdefault(key, []).append(m if d == ONE else math.log(m))
    out = {}
    for key, ms in medians.items():
        if len(ms) < 2:
            continue
        a = np.asarray(ms)
        spread = float(a.max() - a.min())
        out[key.text()] = {"run_sd": float(np.std(a, ddof=1)), "runs": len(ms),
                           "largest_change": spread if direction(key.metric, key.unit) == ONE else math.expm1(spread)}
    return out


def read_noise(path: Path, normalise: bool) -> dict[str, float]:
    """The run-to-run standard deviation per series from a ``--calibrate`` file."""
    data = json.loads(read_regular(path))
    if data.get("schema") != NOISE_SCHEMA:
        raise ValueError(f"{path}: not an isobench noise file (schema {NOISE_SCHEMA}); run --calibrate again")
    return {k: float(v["run_sd"]) for k, v in data["normalised" if normalise else "raw"].items()}
