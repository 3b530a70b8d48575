"""An A/B comparison with a known false-alarm rate (``isobench compare`` and ``isobench ab``).

Every series present on both sides (backend, measurement, workload, metric,
unit, params) gets a verdict from ``harness.stats.family``: ``regression``,
``improvement``, ``equivalent`` (TOST within the margin) or ``inconclusive``
(too few samples, or the data cannot tell).  Metrics without a better
direction are listed with ``--all`` and never judged.

- BASE and NEW may each be several runs, comma-separated (``A1,A2,A3``): the run is the
  unit -- each run's median is one observation, and their spread is the run-to-run variation
  the test needs (``harness.stats.runs``).  ``isobench ab`` pairs its runs (A B B A ...).
- ``--normalise`` divides every sample by the median of the same series of the
  run's reference backend (``reference`` in the scenario, or ``--normalise
  BACKEND``): host drift moves all backends of a run together and cancels; the
  reference's own sampling error is carried into the test, not dropped.
- ``--calibrate RUN RUN …`` learns from A/A runs of one commit how much a
  series' median moves from run to run (``harness.stats.calibration``); ``--noise FILE``
  applies it as a prior with its own degrees of freedom -- only when asked.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.metric import HIGHER, LOWER, NONE, ONE
from harness.stats import ALPHA, BOOTSTRAPS, THRESHOLD
from harness.stats.series import SeriesKey

__all__ = ["HIGHER", "LOWER", "NONE", "ONE", "Row", "calibrate", "compare", "comparison", "direction"]

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import pandas as pd

    from harness.stats.calibration import Calibration, SeriesNoise
    from harness.stats.family import Family, Judged

NOISE_FILE = Path("results/noise.json")
#: (values of one run, the sampling variance of the reference median they were divided by: 0 unnormalised)
RunValues = tuple["np.ndarray", float]


def direction(name: str, unit: str | None = None) -> str:
    from harness.measure import catalogue

    return catalogue().direction(name, unit)


def _tick(key: SeriesKey) -> float:
    from harness.measure import catalogue

    return catalogue().tick(key.metric, key.unit)


@dataclass(frozen=True)
class Row:
    series: SeriesKey
    base: np.ndarray  # every value of the series' runs, in order: numbers, never a Python float each
    new: np.ndarray
    direction: str
    base_median: float
    new_median: float
    change: float  # relative change of the level; for ONE, change of |median - 1|
    lo: float  # (1 - 2 alpha) interval of the change
    hi: float
    p: float  # uncorrected
    q: float  # adjusted across the judged series (BH or Holm)
    margin: float
    verdict: str  # regression | improvement | equivalent | inconclusive | not judged | only in base|new
    why: str = ""
    runs: tuple[int, int] = (1, 1)
    run_sd: float | None = None  # sd of a run's value (of its log) the test used; None: a test of samples
    detectable: float = math.nan  # "sees >=": the smallest change found as a regression 4 times in 5
    shift: float = math.nan  # the Hodges–Lehmann shift of the samples (the rank test's own estimate)
    test: str = ""  # runs | paired runs | samples (harness.stats.abtest)
    df: float = math.nan  # degrees of freedom of the test
    prior_df: float = 0.0  # of them, lent by a calibration or by the other series

    @property
    def key(self) -> dict[str, Any]:
        """backend, measurement, workload, metric, unit and params (as text), for a table; and the
        host when fleets are compared host by host."""
        fields = self.series.fields()
        if self.series.split is not None:
            fields["host"] = str(self.series.split)
        return fields

    @property
    def who(self) -> str:
        """The backend, ``@ host`` when fleets are compared."""
        return self.key["backend"] + (f" @ {self.key['host']}" if "host" in self.key else "")


@dataclass
class Comparison:
    rows: list[Row]
    family: Family | None = None
    notes: list[str] = field(default_factory=list)  # what was applied, what is doubtful


def series(df: pd.DataFrame) -> dict[SeriesKey, np.ndarray]:
    """ok, non-warm-up values per series (per host too, when the rows carry a ``split``: a fleet's)."""
    from harness.stats.series import groups

    if df.empty:
        return {}
    keep = df["status"] == "ok"
    if "warmup" in df.columns:
        keep &= ~df["warmup"].fillna(False).astype(bool)
    df = df.loc[keep, [c for c in df.columns if wanted(c)]]  # the group of a series: its keys and values only
    return {key: g["value"].to_numpy(dtype=float) for key, _, g in groups(df, split="split" in df.columns)}


def wanted(column: str) -> bool:
    """The columns a comparison reads (``results.load(..., columns=wanted)``): a series' keys (a
    fleet's host, ``split``, among them), its values and whether each counts."""
    from harness.stats.series import CASE, COLUMNS

    return column in (*COLUMNS, CASE, "split", "value", "status", "warmup") or column.startswith("param_")


#: units normalised by --normalise: host drift scales durations; memory and ratios keep their values
NORMALISED_UNITS = {"ms"}


def normalised(s: Mapping[SeriesKey, np.ndarray], reference: str) -> dict[SeriesKey, RunValues]:
    """Each duration series divided by the median of the reference backend's same series in the
    same run, with that median's sampling variance (of its log); durations without a reference
    counterpart (or a zero one) and the reference's own durations drop out; other units pass
    unchanged."""
    import numpy as np

    from harness.stats.runs import reference_within

    def case(key: SeriesKey) -> SeriesKey:
        return key._replace(backend="", accel=None)

    refs = {case(k): (k, v) for k, v in s.items() if k.backend == reference}
    out: dict[SeriesKey, RunValues] = {}
    for key, values in s.items():
        if key.unit not in NORMALISED_UNITS:
            out[key] = values, 0.0
            continue
        if key.backend == reference or case(key) not in refs:
            continue
        ref_key, ref = refs[case(key)]
        m = float(np.median(ref))
        if m <= 0:
            continue
        within = reference_within(np.asarray(ref, dtype=float), _tick(ref_key))
        out[key] = np.asarray(values, dtype=float) / m, within if math.isfinite(within) else 0.0
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


def side(frames: Iterable[pd.DataFrame], reference: str | None = None) -> dict[SeriesKey, list[RunValues]]:
    """Per series, one entry per run (runs normalised first when ``reference`` is set)."""
    out: dict[SeriesKey, list[RunValues]] = {}
    for df in frames:
        s = series(df)
        per = normalised(s, reference) if reference else {k: (v, 0.0) for k, v in s.items()}
        for key, run in per.items():
            out.setdefault(key, []).append(run)
    return out


def comparison(base: pd.DataFrame | list[pd.DataFrame], new: pd.DataFrame | list[pd.DataFrame],
               threshold: float = THRESHOLD, alpha: float = ALPHA, *, noise: Calibration | None = None,
               correction: str = "bh", reference: str | None = None, bootstraps: int = BOOTSTRAPS,
               paired: bool = False) -> Comparison:
    """A verdict per series; p-values of the judged series are adjusted together.  ``paired``: the
    i-th base run and the i-th new run were made side by side (``isobench ab``)."""
    from harness.measure import catalogue
    from harness.stats.family import SeriesData, judge

    sb = side(base if isinstance(base, list) else [base], reference)
    sn = side(new if isinstance(new, list) else [new], reference)
    keys = sorted(set(sb) | set(sn), key=lambda k: tuple(str(x) for x in k))
    cat = catalogue()
    data: dict[Hashable, SeriesData] = {}
    for k in keys:
        if k in sb and k in sn:
            cal = noise.table(reference is not None).get(k.text()) if noise else None
            data[k] = SeriesData([v for v, _ in sb[k]], [v for v, _ in sn[k]], direction(k.metric, k.unit), k.unit,
                                 _tick(k), cat.resolution(k.metric, k.unit), cal.prior() if cal else None,
                                 cal.scale if cal else None, [e for _, e in sb[k]] if reference else None,
                                 [e for _, e in sn[k]] if reference else None)
    fam = judge(data, paired=paired, threshold=threshold, alpha=alpha, correction=correction, bootstraps=bootstraps,
                g_eff=noise.effective_series if noise else None)
    rows = [_row(k, sb.get(k, []), sn.get(k, []), fam.judged.get(k), threshold) for k in keys]
    return Comparison(rows, fam)


def plan_line(c: Comparison, target: float, threshold: float, paired: bool) -> str:
    """"To see 10 % here, take K >= ..." from the variance of run medians each series' test used
    (``harness.stats.power.plan``); what it takes instead where no test had one."""
    import numpy as np

    from harness.stats import power

    a_eff = c.family.alpha_eff if c.family else ALPHA
    need: list[tuple[int, Row]] = []
    blind = 0
    for r in c.rows:
        if r.verdict in ("not judged", "only in base", "only in new") or r.direction == ONE:
            continue
        if r.run_sd is None:
            blind += 1
            continue
        k = power.plan(r.run_sd ** 2, r.prior_df, target, threshold, a_eff, paired=paired)
        need.append((power.MAX_RUNS + 1 if k is None else k, r))
    if not need:
        return (f"planning: to see {target:.0%} here, first learn the run-to-run variation: "
                "`isobench ab` with 3 runs a side or more, or `isobench compare --calibrate` on 3 A/A runs"
                if blind else "")
    worst_k, worst = max(need, key=lambda t: t[0])
    half = int(np.median(sorted(k for k, _ in need)))

    def runs(k: int) -> str:
        return str(k) if k <= power.MAX_RUNS else f"{power.MAX_RUNS}+"

    text = (f"planning: to see a {target:.0%} change in every judged series (80 % of the time, after the "
            f"correction), take K ≥ {runs(worst_k)} runs a side ({'paired' if paired else 'each side'}); the "
            f"noisiest is {worst.series.label()} {worst.series.measurement}/{worst.series.workload} "
            f"{worst.series.metric} (a run's median moves ±{math.expm1(worst.run_sd or 0):.1%}); "
            f"K ≥ {runs(half)} for half of them")
    if target <= threshold:
        text = f"planning: a change of {target:.0%} is within the margin ({threshold:.0%}): none can be called one"
    return text + (f"; {blind} series had one run a side and no calibration: nothing to plan from" if blind else "")


def compare(base: pd.DataFrame | list[pd.DataFrame], new: pd.DataFrame | list[pd.DataFrame],
            threshold: float = THRESHOLD, alpha: float = ALPHA, **kw: Any) -> list[Row]:
    """``comparison(...).rows``."""
    return comparison(base, new, threshold, alpha, **kw).rows


def _row(k: SeriesKey, b_runs: list[RunValues], n_runs: list[RunValues], j: Judged | None, margin: float) -> Row:
    import numpy as np

    from harness.stats.runs import LOG
    from harness.stats.shift import hodges_lehmann

    d = direction(k.metric, k.unit)
    b = np.concatenate([np.asarray(r, dtype=float) for r, _ in b_runs]) if b_runs else np.array([])
    n = np.concatenate([np.asarray(r, dtype=float) for r, _ in n_runs]) if n_runs else np.array([])
    nan = math.nan
    bm = float(np.median(b)) if b.size else nan
    nm = float(np.median(n)) if n.size else nan
    runs = (len(b_runs), len(n_runs))
    if not b.size or not n.size:
        return Row(k, b, n, d, bm, nm, nan, nan, nan, nan, nan, margin,
                   "only in new" if not b.size else "only in base", runs=runs)
    if j is None or j.effect is None:
        return Row(k, b, n, d, bm, nm, nan, nan, nan, nan, nan, margin, "not judged", "no better direction",
                   runs=runs)
    e = j.effect
    shift = hodges_lehmann(np.abs(b - 1), np.abs(n - 1), relative=False) if d == ONE else \
        hodges_lehmann(b, n, relative=e.scale == LOG)
    run_sd = math.sqrt(j.variance.var) if j.variance.usable else None
    return Row(k, b, n, d, bm, nm, e.change, e.lo, e.hi, e.p, j.q, margin, j.verdict, j.why, runs=runs,
               run_sd=run_sd, detectable=j.sees, shift=shift, test=e.test, df=e.df, prior_df=j.prior_df)


def calibrate(runs: list[pd.DataFrame], reference: str | None = None) -> tuple[dict[str, SeriesNoise], float | None]:
    """Per series, from A/A runs of one commit: the variance of a run's median (of its log) across
    the runs with its degrees of freedom, the within-run part of it, and the largest change seen
    between two of them; and how many independent series the runs' effects amount to."""
    from harness.stats.calibration import fit

    sides = [side([df], reference) for df in runs]
    return fit([{k: v[0] for k, v in s.items()} for s in sides], lambda k: direction(k.metric, k.unit),
               lambda k: k.text(), _tick)
