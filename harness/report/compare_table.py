"""The Markdown table of ``isobench compare``: one row per series, regressions first."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING

from harness.metric import ONE
from harness.stats.numbers import fmt

if TYPE_CHECKING:  # pragma: no cover
    from harness.compare import Row


def _change_text(r: Row, v: float) -> str:
    if math.isnan(v):
        return ""
    if not math.isfinite(v):
        return "∞"
    return f"{v:+.3f}" if r.direction == ONE else f"{v:+.1%}"


def _df(df: float) -> str:
    return "∞" if math.isinf(df) else f"{df:.0f}"


ORDER = {"regression": 0, "improvement": 1, "inconclusive": 2, "equivalent": 3, "only in base": 4,
         "only in new": 5, "not judged": 6}


def host_drift(rows: list[Row], yardstick: str | None) -> str:
    """A warning when the yardstick (bare metal: none of the code a change touches runs there)
    changed significantly itself: the host moved between the runs, and every backend's durations
    carry that move too.  Empty otherwise."""
    moved = [r for r in rows if r.key["backend"] == yardstick and r.key["unit"] == "ms"
             and r.verdict in ("regression", "improvement")]
    if not moved:
        return ""
    worst = max(moved, key=lambda r: abs(r.change))
    return (f"\n**The host itself changed between the runs:** {yardstick} moved in {len(moved)} series "
            f"(e.g. {worst.key['workload']} {worst.key['metric']} {_change_text(worst, worst.change)}), and "
            f"every backend's durations carry that.  Calibrate (`--calibrate`), pool runs a side, or "
            f"`--normalise` to a backend of the same run before reading the rows below as changes of "
            f"the code.\n")


def _tests(rows: list[Row]) -> str:
    """What the tests were: t on run medians (with their degrees of freedom) and/or samples only."""
    runs = [r for r in rows if r.test in ("runs", "paired runs")]
    samples = [r for r in rows if r.test == "samples"]
    parts = []
    if runs:
        dfs = sorted(r.df for r in runs)
        df = "∞" if math.isinf(dfs[0]) else f"{dfs[0]:.0f}"
        parts.append(f"Student's t on {'paired ' if runs[0].test == 'paired runs' else ''}run medians for "
                     f"{len(runs)} series (≥ {df} degrees of freedom, the variance of a run's median from the "
                     "runs, a calibration and the other series)")
    if samples:
        parts.append(f"a test of one run's samples a side for {len(samples)} series -- **uncalibrated**: it does "
                     "not see how much two runs of one commit differ (run `isobench ab`, or compare several runs "
                     "a side, or --calibrate)")
    return "; ".join(parts) or "no test"


def markdown(rows: Iterable[Row], base_name: str, new_name: str, threshold: float, alpha: float,
             show_all: bool = False, *, correction: str = "bh", noise: str | None = None,
             reference: str | None = None, yardstick: str | None = None, notes: Iterable[str] = ()) -> str:
    """The verdicts as a Markdown table, regressions first; "not judged" rows only with ``show_all``;
    ``notes``: lines above the table (what was injected or applied, planning)."""
    from tabulate import tabulate

    rows = list(rows)
    counts = {v: sum(r.verdict == v for r in rows) for v in ORDER}
    method = {"bh": "Benjamini–Hochberg", "holm": "Holm"}[correction]
    head = (f"## isobench compare: {base_name} → {new_name}\n\n"
            + "".join(f"{n}\n\n" for n in notes)
            + f"{_tests(rows)}; {method}-adjusted p < {alpha:g}; margin {threshold:.0%} (cpu_ratio: {threshold:g} "
              "from 1, memory near 0: its resolution)"
            + (f"; the run-to-run variation learned from A/A runs ({noise}) enters as a prior with its own "
               "degrees of freedom" if noise else "")
            + f"; equivalent = the {1 - 2 * alpha:.0%} interval lies within ±margin (TOST)"
            + "; HL = the Hodges–Lehmann shift of the samples (the rank test's estimate)"
            + "; sees ≥ = the smallest change this comparison calls a regression 80 % of the time, margin and "
              "correction included"
            + (f"; durations normalised to {reference}'s median in the same run (its sampling error counted)"
               if reference else "")
            + ".  " + ", ".join(f"{n} {k}" for k, n in counts.items() if n) + "."
            + ("" if show_all or not counts["not judged"] else " (--all shows the rows not judged)") + "\n"
            + host_drift(rows, yardstick))
    table = []
    for r in sorted(rows, key=lambda r: ORDER[r.verdict]):
        if r.verdict == "not judged" and not show_all:
            continue
        interval = f"[{_change_text(r, r.lo)}, {_change_text(r, r.hi)}]" if math.isfinite(r.lo) else ""
        runs = "" if r.runs == (1, 1) else f", {r.runs[0]} vs {r.runs[1]} runs"
        run_sd = "" if r.run_sd is None else (f" (runs ±{r.run_sd:.3f}, df {_df(r.df)})" if r.direction == ONE
                                              else f" (runs ±{math.expm1(r.run_sd):.0%}, df {_df(r.df)})")
        verdict = f"**{r.verdict}**" if r.verdict in ("regression", "improvement") else r.verdict
        table.append([r.who, f"{r.key['measurement']}/{r.key['workload']}", r.key["params"],
                      r.key["metric"], r.key["unit"], f"{fmt(r.base_median)} (n={len(r.base)}{runs})",
                      f"{fmt(r.new_median)} (n={len(r.new)})", _change_text(r, r.change), interval,
                      _change_text(r, r.shift),
                      "" if math.isnan(r.q) else f"{r.q:.2g}",
                      "" if math.isnan(r.detectable) else _change_text(r, r.detectable).lstrip("+"),
                      "" if r.verdict in ("not judged", "only in base", "only in new") else
                      (f"±{r.margin:.3f}" if r.direction == ONE else f"±{r.margin:.0%}") + run_sd,
                      verdict + (f" — {r.why}" if r.why else "")])
    headers = ["backend", "case", "params", "metric", "unit", "base median", "new median", "change",
               f"{1 - 2 * alpha:.0%} interval", "HL", "adj. p", "sees ≥", "margin", "verdict"]
    return head + "\n" + tabulate(table, headers=headers, tablefmt="github") + "\n"
