"""Statistics in one place: every number the harness prints with an interval comes from here.

Everything in this package is pure (no I/O, no measuring) and deterministic: bootstraps and
permutations are seeded, so a report or a comparison rebuilt from the same stored results shows
the same intervals and verdicts.  The modules:

- ``series``: what one series is (``SeriesKey``) and how rows are grouped into series;
- ``quantile``: the distribution-free interval of a median (or any quantile);
- ``describe``: one series' summary (median, interval, spread, outliers) and the summary table;
- ``estimate``: a median or a ratio of medians with its interval, or why it has none;
- ``ratio``: the bootstrap interval of a ratio of two medians;
- ``slope``: Theil–Sen slopes with their interval (minimum points, drift, the ramp as the unit);
- ``shape``: drift over a run and two-cluster (bimodal) samples;
- the A/B test behind ``isobench compare`` and ``isobench ab``, the run as the unit: ``runs``
  (one value per run and its sampling error), ``prior`` (variances with degrees of freedom, the
  family prior), ``abtest`` (one series' test and verdict), ``family`` (a whole comparison),
  ``power`` ("sees >=", planning), ``pvalues`` and ``resample`` (the one-run-a-side test),
  ``shift`` (Hodges–Lehmann);
- ``calibration``: run-to-run variation learned from A/A runs, with where it was learned;
- ``numbers``: how a number is written for a reader.

Conventions:
- the centre is the median (startup and memory distributions are skewed and have a long tail;
  the mean would follow the tail);
- an interval that cannot be given honestly is not given: the figure says "too few samples"
  or "not resolved" instead of printing an interval that covers less than it claims.

This module holds what several of them share (constants, what a missing value is) and
imports nothing heavy, so that ``from harness.stats import MIN_N_CI`` stays light (no numpy
for ``isobench --help``).
"""

import math
from typing import Any

#: the confidence of every interval the report prints
CONFIDENCE = 0.95
#: one seed for every bootstrap and permutation: a report rebuilt from stored results is identical
SEED = 20240601
#: resamples of a bootstrap interval
BOOTSTRAPS = 2000
#: values a bootstrap resamples at once (B x n): above it scipy resamples in batches (and its jackknife
#: too), a few MiB at a time instead of B x n x 8 bytes a sample -- the same method, another stream of
#: random draws (stored runs, n <= 500 a side, resample at once as before)
BATCH_VALUES = 1_000_000
#: from this many values a side, an interval of a ratio or change of two medians is the large-sample
#: one (each median's standard error from its distribution-free interval, ``harness.stats.large``)
#: instead of the BCa bootstrap, whose resamples and jackknife grow as B x n and n x n
#: (a 42,000-value series: 14 GiB): the two agree there to a few % of the interval's width
LARGE_N = 5000
#: below this n no distribution-free 95 % interval of a median exists (1 - 2 * 0.5**5 < 0.95), and
#: compare gives no verdict (a test checks it against ``quantile.quantile_ci_ranks``)
MIN_N_CI = 6
#: compare's significance level, after the correction across series (a false discovery rate of 5 %)
ALPHA = 0.05
#: compare's margin: the smallest relative change of a median that counts
THRESHOLD = 0.05


def is_missing(v: Any) -> bool:
    """None, or the NaN pandas puts in a gap."""
    return v is None or (isinstance(v, float) and math.isnan(v))
