"""One series described: median, its interval, spread, outliers, with pyperf-style warnings;
and the summary table, one row per series.

Outliers are points whose modified z-score (Iglewicz & Hoaglin) exceeds 3.5.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.stats import CONFIDENCE, MIN_N_CI
from harness.stats.quantile import clean, quantile_ci
from harness.stats.series import COLUMNS, case_columns, groups, param_columns

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

#: pyperf's thresholds: warn when the spread is large or the sample small
CV_WARN = 0.10
MIN_SAMPLES = 5
#: modified z-score above which a point is an outlier (Iglewicz & Hoaglin 1993)
OUTLIER_Z = 3.5
#: the warning of a median interval of width 0: tied values read at an unknown resolution
ZERO_WIDTH = "not resolved: the median's interval has width 0 (tied values, resolution unknown)"


@dataclass(frozen=True)
class Summary:
    n: int
    median: float
    p90: float
    p99: float
    min: float
    max: float
    mean: float
    stdev: float
    cv: float  # stdev / |mean|; nan when the mean is 0 or n < 2
    ci_lo: float  # distribution-free 95 % interval of the median; nan below MIN_N_CI
    ci_hi: float
    outliers: int
    warnings: tuple[str, ...] = field(default_factory=tuple)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["warnings"] = "; ".join(self.warnings)
        return d


def outlier_mask(x: np.ndarray) -> np.ndarray:
    """Modified z-score |x - median| / (1.4826 MAD) > 3.5.

    When more than half the points are equal the MAD is 0; the mean absolute
    deviation (scaled by 1.2533) stands in, as Iglewicz & Hoaglin suggest, so
    [5, 5, 5, 5, 50] still flags 50 while [5, 5, 5, 5, 5] flags nothing.
    """
    if x.size < 3:
        return np.zeros(x.size, dtype=bool)
    med = np.median(x)
    dev = np.abs(x - med)
    scale = 1.4826 * np.median(dev)
    if scale == 0:
        scale = 1.2533 * np.mean(dev)
    if scale == 0:
        return np.zeros(x.size, dtype=bool)
    return dev / scale > OUTLIER_Z


def summarize(values: Iterable[Any], tick: float = 0.0) -> Summary:
    """Summary statistics of one series, with warnings where the numbers deserve doubt; ``tick``: the
    resolution the values were read at (the median's interval is never narrower)."""
    x = clean(values)
    n = int(x.size)
    if n == 0:
        nan = math.nan
        return Summary(0, nan, nan, nan, nan, nan, nan, nan, nan, nan, nan, 0, ("no samples",))
    mean = float(np.mean(x))
    stdev = float(np.std(x, ddof=1)) if n > 1 else math.nan
    cv = stdev / abs(mean) if n > 1 and mean != 0 else math.nan
    lo, hi = quantile_ci(x, tick=tick)
    outliers = int(outlier_mask(x).sum())
    warnings = []
    if n < MIN_N_CI:
        warnings.append(f"too few samples for a {CONFIDENCE:.0%} interval (n={n} < {MIN_N_CI})")
    elif n < MIN_SAMPLES:
        warnings.append(f"too few samples (n={n} < {MIN_SAMPLES})")
    if not math.isnan(cv) and cv >= CV_WARN:
        warnings.append(f"unstable: cv {cv:.0%} >= {CV_WARN:.0%}")
    if lo == hi:
        warnings.append(ZERO_WIDTH)
    if outliers:
        warnings.append(f"{outliers} outlier{'s' if outliers > 1 else ''} (MAD)")
    p90, p99 = np.percentile(x, [90, 99])
    return Summary(n, float(np.median(x)), float(p90), float(p99), float(x.min()), float(x.max()),
                   mean, stdev, cv, lo, hi, outliers, tuple(warnings))


def summary_table(df: pd.DataFrame, split: bool = False,
                  tick: Callable[[str, str], float] | None = None) -> pd.DataFrame:
    """One row per series (``series.COLUMNS``, ``split`` when asked, every ``param_*``) with its
    ``Summary``.

    Warm-up rows are dropped; failed rows do not enter the statistics but are counted in
    ``failed`` (a series that only failed still gets a row, n = 0).  ``split`` tells apart the
    series of runs from different hosts or kernels (``harness.report.model``); ``tick(metric,
    unit)``: the resolution each metric is read at (``harness.metric``).
    """
    import pandas as pd

    keys = [*COLUMNS, *(["split"] if split else []), *param_columns(df)]
    out_cols = [*keys, *Summary.__dataclass_fields__, "failed"]
    if df.empty:
        return pd.DataFrame(columns=out_cols)
    if "warmup" in df.columns and df["warmup"].fillna(False).astype(bool).any():
        df = df[~df["warmup"].fillna(False).astype(bool)]
    status = df["status"] if "status" in df.columns else pd.Series("ok", index=df.index)
    # only the columns a summary reads go into the groups: a copy of every column per series costs
    # the whole frame again at a million rows
    df = df[[c for c in dict.fromkeys([*keys, *case_columns(df), "value"]) if c in df.columns]]
    df = df.assign(_ok=status.eq("ok"))
    rows = []
    for key, raw, g in groups(df, split):
        ok = g[g["_ok"]]
        s = summarize(ok["value"], tick(key.metric, key.unit) if tick else 0.0) if len(ok) else summarize([])
        d: dict[str, Any] = dict(raw)
        d.update(s.as_dict())
        d["failed"] = int((~g["_ok"]).sum())
        if s.n == 0 and d["failed"]:
            d["warnings"] = f"all {d['failed']} samples failed"
        elif d["failed"]:
            d["warnings"] = "; ".join(filter(None, [f"{d['failed']} failed", str(d["warnings"])]))
        rows.append(d)
    return pd.DataFrame(rows, columns=out_cols)
