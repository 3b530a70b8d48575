"""``isobench compare BASE NEW``: did anything get significantly worse?

For every series present in both runs (backend, measurement, workload,
metric, unit, params) the medians are compared:

- the change is relative, ``(new - base) / |base|``; for metrics whose ideal
  is 1 (``cpu_ratio``) it is the change of the distance from 1,
  ``|new - 1| - |base - 1|`` (0.05 = five percentage points further off);
- significance is a two-sided Mann-Whitney U test on the samples (scipy);
- a **regression** is a change in the bad direction beyond ``--threshold``
  *and* p < ``--alpha``; an improvement is the mirror image; anything else is
  "no change".  Metrics without a good direction (counts set by the case,
  like ``cpu_expected``) are shown but never judged.

Exit status: 1 when anything regressed, 0 otherwise, 2 with one line on
unreadable input.  With few samples a test cannot reach p < 0.05 (3 vs 3
samples: the smallest two-sided p is 0.1); such rows say so.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.metric import HIGHER, LOWER, NONE, ONE

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

HELP = "compare two runs metric by metric; exit 1 on a significant regression"

#: which way is better, per metric, as each measurement declares it (``harness.metric``);
#: metrics nobody declared fall back on their unit
__all__ = ["HIGHER", "LOWER", "NONE", "ONE", "compare", "direction", "judge", "markdown"]

KEYS = ["backend", "measurement", "workload", "metric", "unit"]


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
    p: float
    verdict: str  # regression | improvement | no change | not judged | only in base | only in new
    why: str = ""


def judge(base: list[float], new: list[float], metric: str, unit: str | None, threshold: float,
          alpha: float) -> tuple[str, float, float, float, float, str]:
    """(verdict, base median, new median, change, p, why) for one series."""
    from harness import stats  # numpy/scipy: imported when comparing, not for `isobench --help`

    d = direction(metric, unit)
    b = stats.summarize(base).median if base else math.nan
    n = stats.summarize(new).median if new else math.nan
    if not base or not new:
        return ("only in new" if not base else "only in base"), b, n, math.nan, math.nan, ""
    if d == ONE:
        change = abs(n - 1) - abs(b - 1)
    elif b != 0:
        change = (n - b) / abs(b)
    else:
        change = 0.0 if n == 0 else math.copysign(math.inf, n)
    p = stats.mann_whitney(base, new)
    if d == NONE:
        return "not judged", b, n, change, p, "no better direction"
    worse = change > threshold if d in (LOWER, ONE) else change < -threshold
    better = change < -threshold if d in (LOWER, ONE) else change > threshold
    significant = not math.isnan(p) and p < alpha
    if (worse or better) and not significant:
        why = f"p={p:.2g} >= {alpha:g}" + (" (too few samples to reach significance)"
                                            if min_p(len(base), len(new)) >= alpha else "")
        return "no change", b, n, change, p, why
    if worse:
        return "regression", b, n, change, p, ""
    if better:
        return "improvement", b, n, change, p, ""
    return "no change", b, n, change, p, ""


def min_p(n1: int, n2: int) -> float:
    """The smallest two-sided p an exact Mann-Whitney U test can give for these sizes."""
    return 2 / math.comb(n1 + n2, n1) if n1 and n2 else 1.0


def series(df: pd.DataFrame) -> dict[tuple[Any, ...], list[float]]:
    """ok, non-warm-up values per (KEYS + params) key; missing params read as None."""
    from harness import stats

    if df.empty:
        return {}
    df = df[(df["status"] == "ok") & ~df["warmup"].fillna(False).astype(bool)]
    pcols = stats.param_columns(df)
    out: dict[tuple[Any, ...], list[float]] = {}
    for key, g in df.groupby(KEYS + pcols, dropna=False):
        params = tuple((c.removeprefix("param_"), _norm(v)) for c, v in zip(pcols, key[len(KEYS):], strict=True)
                       if _norm(v) is not None)
        out[(*key[:len(KEYS)], params)] = [float(v) for v in g["value"]]
    return out


def _norm(v: Any) -> Any:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    if isinstance(v, float) and v.is_integer():
        return int(v)  # 100 and 100.0 (a column with gaps turns ints into floats) are one case
    return v


def compare(base: pd.DataFrame, new: pd.DataFrame, threshold: float = 0.05, alpha: float = 0.05) -> list[Row]:
    sb, sn = series(base), series(new)
    rows = []
    for key in sorted(set(sb) | set(sn), key=lambda k: tuple(str(x) for x in k)):
        b, n = sb.get(key, []), sn.get(key, [])
        verdict, bm, nm, change, p, why = judge(b, n, key[3], key[4], threshold, alpha)
        k = dict(zip(KEYS, key[:len(KEYS)], strict=True))
        k["params"] = " ".join(f"{name}={v}" for name, v in key[-1])
        rows.append(Row(k, b, n, direction(key[3], key[4]), bm, nm, change, p, verdict, why))
    return rows


def _fmt(v: float) -> str:
    from harness.report.style import fmt

    return fmt(v)


def markdown(rows: Iterable[Row], base_name: str, new_name: str, threshold: float, alpha: float,
             show_all: bool = False) -> str:
    """The verdicts as a Markdown table, regressions first; "not judged" rows only with ``show_all``."""
    from tabulate import tabulate

    rows = list(rows)
    counts = {v: sum(r.verdict == v for r in rows) for v in
              ("regression", "improvement", "no change", "not judged", "only in base", "only in new")}
    head = (f"## isobench compare: {base_name} → {new_name}\n\n"
            f"Threshold {threshold:.0%} (cpu_ratio: {threshold:g} further from 1), significance p < {alpha:g} "
            f"(Mann-Whitney U, two-sided).  "
            + ", ".join(f"{n} {k}" for k, n in counts.items() if n) + "."
            + ("" if show_all or not counts["not judged"] else " (--all shows the rows not judged)") + "\n")
    order = {"regression": 0, "improvement": 1, "no change": 2, "only in base": 3, "only in new": 4,
             "not judged": 5}
    table = []
    for r in sorted(rows, key=lambda r: order[r.verdict]):
        if r.verdict == "not judged" and not show_all:
            continue
        if r.direction == ONE:
            change = f"{r.change:+.3f} from 1" if not math.isnan(r.change) else ""
        else:
            change = f"{r.change:+.1%}" if not math.isnan(r.change) and math.isfinite(r.change) else \
                ("" if math.isnan(r.change) else "∞")
        verdict = f"**{r.verdict}**" if r.verdict in ("regression", "improvement") else r.verdict
        table.append([r.key["backend"], f"{r.key['measurement']}/{r.key['workload']}", r.key["params"],
                      r.key["metric"], r.key["unit"], f"{_fmt(r.base_median)} (n={len(r.base)})",
                      f"{_fmt(r.new_median)} (n={len(r.new)})", change,
                      "" if math.isnan(r.p) else f"{r.p:.2g}", verdict + (f" — {r.why}" if r.why else "")])
    headers = ["backend", "case", "params", "metric", "unit", "base median", "new median", "change", "p",
               "verdict"]
    return head + "\n" + tabulate(table, headers=headers, tablefmt="github") + "\n"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("base", type=Path, metavar="BASE", help="the reference run directory")
    p.add_argument("new", type=Path, metavar="NEW", help="the run directory to judge")
    p.add_argument("--threshold", type=float, default=0.05,
                   help="smallest relative change of a median that counts (default 0.05 = 5%%)")
    p.add_argument("--alpha", type=float, default=0.05, help="significance level (default 0.05)")
    p.add_argument("--markdown", type=Path, metavar="FILE", help="also write the Markdown table to FILE")
    p.add_argument("--out", type=Path, metavar="DIR",
                   help="where compare.html/compare.md go (default: reports/compare-BASE-vs-NEW)")
    p.add_argument("--all", action="store_true", dest="show_all",
                   help="also list metrics without a better direction (counts set by the case)")


def main(args: argparse.Namespace) -> int:
    from harness.results import ResultsError, load

    if not 0 <= args.threshold < 10 or not 0 < args.alpha < 1:
        print("isobench compare: --threshold must be in [0, 10) and --alpha in (0, 1)", file=sys.stderr)
        return 2
    try:
        base, new = load(args.base), load(args.new)
    except (ResultsError, OSError, ValueError) as e:
        print(f"isobench compare: {e}", file=sys.stderr)
        return 2
    rows = compare(base, new, args.threshold, args.alpha)
    if not any(r.verdict not in ("only in base", "only in new") for r in rows):
        print(f"isobench compare: {args.base} and {args.new} have no series in common", file=sys.stderr)
        return 2
    text = markdown(rows, args.base.name, args.new.name, args.threshold, args.alpha,
                    getattr(args, "show_all", False))
    print(text)
    if args.markdown:
        try:
            args.markdown.parent.mkdir(parents=True, exist_ok=True)
            args.markdown.write_text(text)
        except OSError as e:
            print(f"isobench compare: cannot write {args.markdown}: {e.strerror}", file=sys.stderr)
            return 2
    from harness.report import compare_page

    out = getattr(args, "out", None) or compare_page.default_out(args.base, args.new)
    try:
        page = compare_page.write(rows, args.base.name, args.new.name, text, out)
        print(f"isobench compare: page {page}", file=sys.stderr)  # stdout stays the Markdown table
    except OSError as e:
        print(f"isobench compare: cannot write the page under {out}: {e.strerror}", file=sys.stderr)
        return 2
    return 1 if any(r.verdict == "regression" for r in rows) else 0
