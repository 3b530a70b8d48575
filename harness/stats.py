"""Statistics in one place: summaries with pyperf-style warnings, fits, tests, ratios.

Everything here is pure (no I/O, no measuring) and deterministic: the bootstrap
and the permutation test are seeded, so a report rebuilt from the same stored
results shows the same intervals.

Conventions:
- the centre is the median (startup and memory distributions are skewed and
  have a long tail; the mean would follow the tail);
- the 95 % interval of a median (or any quantile) is the distribution-free
  order-statistic interval (``scipy.stats.quantile_test``): two order
  statistics whose binomial coverage is at least 95 % for any continuous
  distribution.  Below the n where that coverage is reachable (n < 6 for the
  median) there is no interval, and the summary says so instead of printing
  a zero-width or bootstrap interval that covers far less than it claims;
- a ratio of two medians gets a BCa bootstrap interval that resamples both
  samples (``scipy.stats.bootstrap``), only when both sides could carry a
  median interval themselves;
- a slope gets Theil–Sen with its rank-based interval (``scipy.stats.theilslopes``);
- outliers are points whose modified z-score (Iglewicz & Hoaglin) exceeds 3.5.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

#: pyperf's thresholds: warn when the spread is large or the sample small
CV_WARN = 0.10
MIN_SAMPLES = 5
#: modified z-score above which a point is an outlier (Iglewicz & Hoaglin 1993)
OUTLIER_Z = 3.5
BOOTSTRAP_RESAMPLES = 2000
CONFIDENCE = 0.95
SEED = 20240601
#: below this n no distribution-free 95 % interval of a median exists (1 - 2 * 0.5**5 < 0.95)
MIN_N_CI = 6

#: the columns that identify one series in a summary table (plus every param_* column)
KEYS = ("backend", "accel", "measurement", "workload", "metric", "unit")


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


def _clean(values: Iterable[Any]) -> np.ndarray:
    """Finite floats only: failed samples carry None/NaN and must not count."""
    arr = np.asarray([v for v in values if v is not None], dtype=float)
    return arr[np.isfinite(arr)]


def quantile_ci_ranks(n: int, q: float = 0.5, confidence: float = CONFIDENCE) -> tuple[int, int] | None:
    """1-based ranks (l, u) of the order statistics that bound the ``q`` quantile with at
    least ``confidence`` (equal tails, each <= (1 - confidence) / 2), or None when n is too small.

    The same interval ``scipy.stats.quantile_test(...).confidence_interval`` returns (a test
    checks it); computed from the binomial here so a simulation can use it vectorised.
    """
    from scipy import stats

    if n < 1:
        return None
    tail = (1 - confidence) / 2
    k = np.arange(n + 1)
    cdf = stats.binom.cdf(k, n, q)  # cdf[j] = P(#below <= j)
    lows = np.nonzero(cdf[:n] <= tail)[0]  # rank l = j + 1 has P(B <= l - 1) <= tail
    sf = stats.binom.sf(k - 1, n, q)  # sf[j] = P(#below >= j)
    highs = np.nonzero(sf[1:] <= tail)[0] + 1  # rank u: P(B >= u) <= tail
    if lows.size == 0 or highs.size == 0:
        return None
    return int(lows[-1]) + 1, int(highs[0])


def min_n_for_ci(q: float = 0.5, confidence: float = CONFIDENCE) -> int:
    """The smallest n with an order-statistic interval of the ``q`` quantile (6 for a 95 % median)."""
    n = 1
    while quantile_ci_ranks(n, q, confidence) is None:
        n += 1
    return n


def quantile_ci(x: np.ndarray, q: float = 0.5, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Distribution-free interval of the ``q`` quantile; (nan, nan) below ``min_n_for_ci``."""
    ranks = quantile_ci_ranks(int(x.size), q, confidence)
    if ranks is None:
        return math.nan, math.nan
    s = np.sort(x)
    return float(s[ranks[0] - 1]), float(s[ranks[1] - 1])


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


def summarize(values: Iterable[Any]) -> Summary:
    """Summary statistics of one series, with warnings where the numbers deserve doubt."""
    x = _clean(values)
    n = int(x.size)
    if n == 0:
        nan = math.nan
        return Summary(0, nan, nan, nan, nan, nan, nan, nan, nan, nan, nan, 0, ("no samples",))
    mean = float(np.mean(x))
    stdev = float(np.std(x, ddof=1)) if n > 1 else math.nan
    cv = stdev / abs(mean) if n > 1 and mean != 0 else math.nan
    lo, hi = quantile_ci(x)
    outliers = int(outlier_mask(x).sum())
    warnings = []
    if n < MIN_N_CI:
        warnings.append(f"too few samples for a {CONFIDENCE:.0%} interval (n={n} < {MIN_N_CI})")
    elif n < MIN_SAMPLES:
        warnings.append(f"too few samples (n={n} < {MIN_SAMPLES})")
    if not math.isnan(cv) and cv >= CV_WARN:
        warnings.append(f"unstable: cv {cv:.0%} >= {CV_WARN:.0%}")
    if outliers:
        warnings.append(f"{outliers} outlier{'s' if outliers > 1 else ''} (MAD)")
    p90, p99 = np.percentile(x, [90, 99])
    return Summary(n, float(np.median(x)), float(p90), float(p99), float(x.min()), float(x.max()),
                   mean, stdev, cv, lo, hi, outliers, tuple(warnings))


def param_columns(df: pd.DataFrame) -> list[str]:
    return sorted(c for c in df.columns if c.startswith("param_"))


def summary_table(df: pd.DataFrame, extra_keys: Sequence[str] = ()) -> pd.DataFrame:
    """One row per series (``KEYS`` + ``extra_keys`` + every ``param_*``) with its ``Summary``.

    Warm-up rows are dropped; failed rows do not enter the statistics but are
    counted in ``failed`` (a series that only failed still gets a row, n = 0).
    ``extra_keys`` splits series further, e.g. ``("host",)`` for a comparison
    of several machines.
    """
    import pandas as pd

    keys = [*KEYS, *extra_keys, *param_columns(df)]
    out_cols = [*keys, *Summary.__dataclass_fields__, "failed"]
    if df.empty:
        return pd.DataFrame(columns=out_cols)
    df = df.copy()
    for k in keys:
        if k not in df.columns:
            df[k] = None
    if "warmup" in df.columns:
        df = df[~df["warmup"].fillna(False).astype(bool)]
    status = df["status"] if "status" in df.columns else pd.Series("ok", index=df.index)
    df = df.assign(_ok=status.eq("ok"))
    rows = []
    for key, g in df.groupby(keys, dropna=False, sort=True):
        ok = g[g["_ok"]]
        s = summarize(ok["value"]) if len(ok) else summarize([])
        d: dict[str, Any] = dict(zip(keys, key, strict=True))
        d.update(s.as_dict())
        d["failed"] = int((~g["_ok"]).sum())
        if s.n == 0 and d["failed"]:
            d["warnings"] = f"all {d['failed']} samples failed"
        elif d["failed"]:
            d["warnings"] = "; ".join(filter(None, [f"{d['failed']} failed", str(d["warnings"])]))
        rows.append(d)
    return pd.DataFrame(rows, columns=out_cols)


def linear_fit(x: Sequence[float], y: Sequence[float]) -> tuple[float, float, float]:
    """Least-squares line ``y = slope * x + intercept`` and its r² (``scipy.stats.linregress``)."""
    from scipy import stats

    xa, ya = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if xa.shape != ya.shape:
        raise ValueError(f"linear_fit: x and y differ in length ({xa.size} != {ya.size})")
    keep = np.isfinite(xa) & np.isfinite(ya)
    xa, ya = xa[keep], ya[keep]
    if xa.size < 2 or np.all(xa == xa[0]):
        raise ValueError("linear_fit: needs at least two distinct x values")
    res = stats.linregress(xa, ya)
    r2 = float(res.rvalue) ** 2 if np.isfinite(res.rvalue) else 1.0  # constant y: a perfect flat fit
    return float(res.slope), float(res.intercept), r2


def mann_whitney(a: Iterable[Any], b: Iterable[Any]) -> float:
    """Two-sided Mann-Whitney U p-value; 1.0 when both samples are identical constants, nan if one is empty."""
    from scipy import stats

    xa, xb = _clean(a), _clean(b)
    if xa.size == 0 or xb.size == 0:
        return math.nan
    if np.all(xa == xa[0]) and np.all(xb == xa[0]):
        return 1.0
    return float(stats.mannwhitneyu(xa, xb, alternative="two-sided").pvalue)


def permutation_test(a: Iterable[Any], b: Iterable[Any], *, n_resamples: int = 9999,
                     seed: int = SEED) -> float:
    """Two-sided permutation-test p-value for a difference of medians (``scipy.stats.permutation_test``)."""
    from scipy import stats

    xa, xb = _clean(a), _clean(b)
    if xa.size == 0 or xb.size == 0:
        return math.nan
    if np.all(xa == xa[0]) and np.all(xb == xa[0]):
        return 1.0

    def diff(u: np.ndarray, v: np.ndarray, axis: int) -> np.ndarray:
        return np.median(u, axis=axis) - np.median(v, axis=axis)

    kw: dict[str, Any] = dict(permutation_type="independent", vectorized=True,
                              n_resamples=n_resamples, alternative="two-sided")
    try:
        res = stats.permutation_test((xa, xb), diff, rng=seed, **kw)
    except TypeError:  # scipy < 1.15 calls the seed random_state
        res = stats.permutation_test((xa, xb), diff, random_state=seed, **kw)
    return float(res.pvalue)


def ratio_of_medians(a: Iterable[Any], b: Iterable[Any], *, confidence: float = CONFIDENCE,
                     n_resamples: int = BOOTSTRAP_RESAMPLES, seed: int = SEED) -> tuple[float, float, float]:
    """median(a) / median(b) with a BCa bootstrap interval that resamples both samples.

    The ratio is nan when either sample is empty or median(b) is 0; the interval
    is nan when either side has fewer than ``MIN_N_CI`` values (a bootstrap of 3
    values has a handful of distinct medians and covers far less than it says).
    BCa corrects the bias and skew of a ratio; where it cannot (all resampled
    medians equal, a degenerate jackknife) the percentile interval stands in.
    """
    from scipy import stats

    xa, xb = _clean(a), _clean(b)
    if xa.size == 0 or xb.size == 0 or np.median(xb) == 0:
        return math.nan, math.nan, math.nan
    ratio = float(np.median(xa) / np.median(xb))
    if min(xa.size, xb.size) < MIN_N_CI:
        return ratio, math.nan, math.nan
    if np.all(xa == xa[0]) and np.all(xb == xb[0]):
        return ratio, ratio, ratio

    def stat(u: np.ndarray, v: np.ndarray, axis: int = -1) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.asarray(np.median(u, axis=axis) / np.median(v, axis=axis))

    lo = hi = math.nan
    for method in ("BCa", "percentile"):
        # scipy warns on a degenerate bootstrap distribution; the result is checked instead
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ci = stats.bootstrap((xa, xb), stat, method=method, confidence_level=confidence,
                                 n_resamples=n_resamples, rng=seed, vectorized=True).confidence_interval
        lo, hi = float(ci.low), float(ci.high)
        if math.isfinite(lo) and math.isfinite(hi):
            break
    return ratio, lo, hi


@dataclass(frozen=True)
class Slope:
    """A robust slope with its interval; ``resolved`` is False when the interval is wider than the figure."""

    slope: float
    lo: float
    hi: float
    intercept: float
    n: int

    @property
    def width(self) -> float:
        return self.hi - self.lo

    @property
    def resolved(self) -> bool:
        return math.isfinite(self.width) and self.width <= abs(self.slope)


def theil_sen(x: Sequence[float], y: Sequence[float], confidence: float = CONFIDENCE) -> Slope:
    """Theil–Sen slope (median of pairwise slopes) with its distribution-free interval.

    Robust to a step or an outlier that would tilt a least-squares line (a page-cache
    refill between two instances).  Needs two distinct x values.
    """
    from scipy import stats

    xa, ya = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(xa) & np.isfinite(ya)
    xa, ya = xa[keep], ya[keep]
    if xa.size < 2 or np.all(xa == xa[0]):
        raise ValueError("theil_sen: needs at least two distinct x values")
    res = stats.theilslopes(ya, xa, alpha=confidence)
    return Slope(float(res.slope), float(res.low_slope), float(res.high_slope), float(res.intercept),
                 int(xa.size))
