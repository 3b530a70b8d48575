"""An A/B comparison with a known false-alarm rate (``isobench compare``: ``harness.commands.compare``).

Every series present on both sides (backend, measurement, workload, metric,
unit, params) gets a verdict from ``harness.abtest``: ``regression``,
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

from harness import abtest
from harness.metric import HIGHER, LOWER, NONE, ONE

__all__ = ["HIGHER", "LOWER", "NONE", "ONE", "compare", "direction", "calibrate"]

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

NOISE_FILE = Path("results/noise.json")
NOISE_SCHEMA = "isobench/noise-2"

KEYS = ["backend", "measurement", "workload", "metric", "unit"]
Key = tuple[Any, ...]


def direction(name: str, unit: str | None = None) -> str:
    from harness.measure import catalogue

    return catalogue().direction(name, unit)


@dataclass(frozen=True)
class Row:
    key: dict[str, Any]
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


def key_text(key: Key) -> str:
    """A stable text form of a series key (the noise file's keys)."""
    params = " ".join(f"{k}={v}" for k, v in key[-1])
    return "|".join([*(str(k) for k in key[:len(KEYS)]), params])


def _norm(v: Any) -> Any:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    if isinstance(v, float) and v.is_integer():
        return int(v)  # 100 and 100.0 (a column with gaps turns ints into floats) are one case
    return v


def series(df: pd.DataFrame) -> dict[Key, list[float]]:
    """ok, non-warm-up values per (KEYS + params) key; missing params read as None."""
    from harness import stats

    if df.empty:
        return {}
    df = df[(df["status"] == "ok") & ~df["warmup"].fillna(False).astype(bool)]
    pcols = stats.param_columns(df)
    out: dict[Key, list[float]] = {}
    for key, g in df.groupby(KEYS + pcols, dropna=False):
        params = tuple((c.removeprefix("param_"), _norm(v)) for c, v in zip(pcols, key[len(KEYS):], strict=True)
                       if _norm(v) is not None)
        out[(*key[:len(KEYS)], params)] = [float(v) for v in g["value"]]
    return out


#: units normalised by --normalise: host drift scales durations; memory and ratios keep their values
NORMALISED_UNITS = {"ms"}


def normalised(s: Mapping[Key, list[float]], reference: str) -> dict[Key, list[float]]:
    """Each duration series divided by the median of the reference backend's same series in the
    same run; durations without a reference counterpart (or a zero one) and the reference's own
    durations drop out; other units pass unchanged."""
    import numpy as np

    out: dict[Key, list[float]] = {}
    for key, values in s.items():
        if key[4] not in NORMALISED_UNITS:
            out[key] = values
            continue
        if key[0] == reference:
            continue
        ref = s.get((reference, *key[1:]))
        if not ref or np.median(ref) == 0:
            continue
        m = float(np.median(ref))
        out[key] = [v / m for v in values]
    return out


def reference_of(manifest: Mapping[str, Any]) -> str | None:
    """The scenario's ``reference`` backend, read from the scenario text stored in the manifest."""
    text = (manifest.get("scenario") or {}).get("text") or ""
    try:
        ref = tomllib.loads(text).get("scenario", {}).get("reference")
    except tomllib.TOMLDecodeError:
        return None
    return ref if isinstance(ref, str) else None


def side(frames: Iterable[pd.DataFrame], reference: str | None = None) -> dict[Key, list[list[float]]]:
    """Per series, one list of values per run (runs normalised first when ``reference`` is set)."""
    out: dict[Key, list[list[float]]] = {}
    for df in frames:
        s = series(df)
        for key, values in (normalised(s, reference) if reference else s).items():
            out.setdefault(key, []).append(values)
    return out


def compare(base: pd.DataFrame | list[pd.DataFrame], new: pd.DataFrame | list[pd.DataFrame],
            threshold: float = abtest.THRESHOLD, alpha: float = abtest.ALPHA, *,
            noise: Mapping[str, float] | None = None, correction: str = "bh",
            reference: str | None = None, bootstraps: int = abtest.BOOTSTRAPS) -> list[Row]:
    """A verdict per series; p-values of the judged series are adjusted together."""
    sb = side(base if isinstance(base, list) else [base], reference)
    sn = side(new if isinstance(new, list) else [new], reference)
    noise = noise or {}
    keys = sorted(set(sb) | set(sn), key=lambda k: tuple(str(x) for x in k))
    effects: dict[Key, abtest.Effect] = {}
    for key in keys:
        if key in sb and key in sn and direction(key[3], key[4]) != NONE:
            effects[key] = abtest.measure(sb[key], sn[key], direction(key[3], key[4]), alpha=alpha,
                                          bootstraps=bootstraps, run_sd=noise.get(key_text(key)))
    judged = [k for k, e in effects.items() if e.enough]
    qs = dict(zip(judged, abtest.adjust([effects[k].p for k in judged], correction), strict=True))
    rows = []
    for key in keys:
        rows.append(_row(key, sb.get(key, []), sn.get(key, []), effects.get(key), qs.get(key, math.nan),
                         threshold, alpha, noise.get(key_text(key))))
    return rows


def _row(key: Key, b_runs: list[list[float]], n_runs: list[list[float]], e: abtest.Effect | None, q: float,
         margin: float, alpha: float, run_sd: float | None = None) -> Row:
    import numpy as np

    k = dict(zip(KEYS, key[:len(KEYS)], strict=True))
    k["params"] = " ".join(f"{name}={v}" for name, v in key[-1])
    d = direction(key[3], key[4])
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

    verdict, why = abtest.verdict(e, q, d, margin, alpha, catalogue().resolution(key[3], key[4]))
    return Row(k, b, n, d, bm, nm, e.change, e.lo, e.hi, e.p, q, margin, verdict, why, runs=runs, run_sd=run_sd,
               detectable=abtest.detectable(e, d, alpha))


def calibrate(runs: list[pd.DataFrame], reference: str | None = None) -> dict[str, dict[str, float]]:
    """Per series, from A/A runs of one commit: ``run_sd``, the standard deviation of the log of a
    run's median (of its median distance from 1 for ONE metrics) across the runs, and the largest
    change seen between two of them (for the reader)."""
    import numpy as np

    sides = [side([df], reference) for df in runs]
    medians: dict[Key, list[float]] = {}
    for s in sides:
        for key, values in s.items():
            d = direction(key[3], key[4])
            v = abtest.prepared(values, d)  # the run's values as the test sees them
            if d == NONE or not v or v[0].size < abtest.MIN_N_CI:
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
        out[key_text(key)] = {"run_sd": float(np.std(a, ddof=1)), "runs": len(ms),
                              "largest_change": spread if direction(key[3], key[4]) == ONE else math.expm1(spread)}
    return out


def read_noise(path: Path, normalise: bool) -> dict[str, float]:
    """The run-to-run standard deviation per series from a ``--calibrate`` file."""
    data = json.loads(path.read_text())
    if data.get("schema") != NOISE_SCHEMA:
        raise ValueError(f"{path}: not an isobench noise file (schema {NOISE_SCHEMA}); run --calibrate again")
    return {k: float(v["run_sd"]) for k, v in data["normalised" if normalise else "raw"].items()}
