"""The statistics simulation: issue 23's figures reproduced and its targets measured, through the
project's own functions (``harness.stats.family.judge``, ``estimate``, ``slope``).

Every row states its trials; a rate's binomial standard error is sqrt(p (1 - p) / trials).
"Before" columns run the formulas compare used before issue 23, re-implemented here in a few
lines each (the code itself is gone): the calibrated normal test, the hierarchical bootstrap,
normalising by a constant, the bare order-statistic interval, Sen's interval from any number
of points.

``python -m tests.simulation`` prints the table that docs/statistics.md carries;
``tests/test_statistics_simulation.py`` pins the targets.  Seeded: the same numbers every time.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass

import numpy as np

from harness.metric import LOWER
from harness.stats import ALPHA, estimate
from harness.stats import slope as slopes
from harness.stats.family import SeriesData, judge
from harness.stats.prior import Prior
from harness.stats.pvalues import adjust, permutation_p
from harness.stats.runs import median_se

#: the issue's host: 3 % lognormal run-to-run variation, 5 % within-run cv, n samples a run, 80 series
TAU, CV, N, G = 0.03, 0.05, 30, 80


@dataclass(frozen=True)
class Result:
    name: str
    trials: int  # what a rate is counted over
    before: float | None
    now: float
    target: str = ""
    unit: str = "rate"  # rate | coverage
    before_trials: int | None = None  # when the formula before ran fewer trials than the one now

    def cell(self, v: float | None, trials: int | None = None) -> str:
        if v is None:
            return "–"
        se = math.sqrt(max(v * (1 - v), 1e-9) / (trials or self.trials))
        return f"{v:.1%} ± {se:.1%}"


# -- data ---------------------------------------------------------------------------------------
def runs(rng: np.random.Generator, g: int, k: int, factor: np.ndarray | None = None, tau: float = TAU,
         n: int = N) -> np.ndarray:
    """(g, k, n) samples: each run's level moved by its own host state, lognormal samples around it."""
    level = np.exp(rng.normal(0, tau, (g, k)))
    x = 10 * level[..., None] * rng.lognormal(0, CV, (g, k, n))
    return x if factor is None else x * factor[:, None, None]


def calibration(rng: np.random.Generator, g: int, r: int) -> list[Prior]:
    """What ``isobench compare --calibrate`` learns from ``r`` A/A runs: each series' variance of the
    log run median with r - 1 degrees of freedom, and its within-run part."""
    x = runs(rng, g, r)
    m = np.log(np.median(x, axis=2))
    w = median_se(np.sort(x, axis=2), "log", presorted=True) ** 2
    return [Prior(float(np.var(m[i], ddof=1)), r - 1, float(w[i].mean())) for i in range(g)]


def family(rng: np.random.Generator, ka: int, kb: int, *, paired: bool = False, cal: int = 0, changed: int = 0,
           change: float = 0.0) -> tuple[list[float], list[str]]:
    """One comparison of G series through ``judge``: each series' uncorrected p and verdict."""
    fac = np.ones(G)
    fac[:changed] = 1 + change
    a, b = runs(rng, G, ka), runs(rng, G, kb, fac)
    priors = calibration(rng, G, cal) if cal else [None] * G
    data = {i: SeriesData(list(a[i]), list(b[i]), LOWER, "ms", calibration=priors[i]) for i in range(G)}
    fam = judge(data, paired=paired, bootstraps=199)
    js = [fam.judged[i] for i in range(G)]
    return [j.effect.p if j.effect else math.nan for j in js], [j.verdict for j in js]


def rates(rng: np.random.Generator, trials: int, **kw: object) -> tuple[float, float, int]:
    """(per-series p < alpha, family-wise any regression/improvement, series counted) over A/A families."""
    ps, fams = [], 0
    for _ in range(trials):
        p, v = family(rng, **kw)  # type: ignore[arg-type]
        ps += p
        fams += any(x in ("regression", "improvement") for x in v)
    arr = np.asarray(ps)
    return float(np.mean(arr < ALPHA)), fams / trials, arr.size


def power(rng: np.random.Generator, trials: int, changed: int, change: float = 0.15, **kw: object) -> float:
    hits = 0
    for _ in range(trials):
        _, v = family(rng, changed=changed, change=change, **kw)  # type: ignore[arg-type]
        hits += sum(x == "regression" for x in v[:changed])
    return hits / (trials * changed)


# -- the formulas before issue 23 -------------------------------------------------------------------
def before_calibrated(rng: np.random.Generator, trials: int, cal: int) -> tuple[float, float]:
    """1 vs 1 run, calibrated: normal test, se^2 = within(a) + within(b) + 2 run_sd^2 (run_sd from
    ``cal`` runs used as known; the within-run part counted a second time)."""
    from scipy import stats

    per, fam = [], 0
    for _ in range(trials):
        run_sd = np.sqrt([c.var for c in calibration(rng, G, cal)])
        a, b = runs(rng, G, 1)[:, 0], runs(rng, G, 1)[:, 0]
        d = np.log(np.median(b, axis=1) / np.median(a, axis=1))
        w = median_se(np.sort(a, axis=1), "log", presorted=True) ** 2 + median_se(np.sort(b, axis=1), "log",
                                                                                   presorted=True) ** 2
        p = 2 * stats.norm.sf(np.abs(d) / np.sqrt(w + 2 * run_sd ** 2))
        per += list(p)
        fam += bool(np.any((adjust(list(p)) < ALPHA) & (np.abs(np.expm1(d)) > 0.05)))
    return float(np.mean(np.asarray(per) < ALPHA)), fam / trials


def before_pooled(rng: np.random.Generator, trials: int, ka: int, kb: int, draws: int = 499) -> float:
    """Several runs a side, uncalibrated: the hierarchical bootstrap (runs, then samples) and its
    normal p."""
    from scipy import stats

    hits = 0
    for _ in range(trials):
        a, b = runs(rng, 1, ka)[0], runs(rng, 1, kb)[0]

        def medians(x: np.ndarray) -> np.ndarray:
            pick = rng.integers(0, x.shape[0], (draws, x.shape[0]))
            idx = rng.integers(0, x.shape[1], (draws, x.shape[0], x.shape[1]))
            return np.median(x[pick[..., None], idx].reshape(draws, -1), axis=1)

        d = (medians(b) - medians(a)) / medians(a)
        hits += 2 * stats.norm.sf(abs(d.mean()) / d.std()) < ALPHA
    return hits / trials


# -- normalising ------------------------------------------------------------------------------------
def normalised(rng: np.random.Generator, trials: int) -> tuple[float, float, int]:
    """A/A, one run a side, no run-to-run variation at all, each series divided by a reference series
    of its run: before (divide by the reference median as if a constant, rank test) and now."""
    from harness.stats.runs import reference_within

    before, ps = [], []
    for _ in range(trials):
        x = runs(rng, G, 2, tau=0.0)
        ref = runs(rng, G, 2, tau=0.0)
        na = x[:, 0] / np.median(ref[:, 0], axis=1)[:, None]
        nb = x[:, 1] / np.median(ref[:, 1], axis=1)[:, None]
        before += [permutation_p(na[i], nb[i]) for i in range(G)]
        data = {i: SeriesData([na[i]], [nb[i]], LOWER, "ms", base_extra=[reference_within(ref[i, 0])],
                              new_extra=[reference_within(ref[i, 1])]) for i in range(G)}
        fam = judge(data)
        ps += [fam.judged[i].effect.p for i in range(G)]  # type: ignore[union-attr]
    return float(np.mean(np.asarray(before) < ALPHA)), float(np.mean(np.asarray(ps) < ALPHA)), len(ps)


# -- quantised medians -------------------------------------------------------------------------------
def quantised(rng: np.random.Generator, trials: int, n: int = 40, tick: float = 0.1,
              sd: float = 0.1) -> dict[str, float]:
    """Latencies around 1 ms (sd 0.1 ms) read in 0.1 ms ticks; the true median anywhere within a tick."""
    true = 1.0 + rng.uniform(0, tick, trials)
    x = np.round((true[:, None] + rng.normal(0, sd, (trials, n))) / tick) * tick
    y = np.round((true[:, None] * 1.2 + rng.normal(0, sd, (trials, n))) / tick) * tick
    out: dict[str, float] = {"zero_width_before": 0.0, "covered_before": 0.0, "covered_now": 0.0, "marked_now": 0.0,
                             "ratio_before": 0.0, "ratio_now": 0.0}
    ratio_trials = min(trials, 150)
    for i in range(trials):
        lo, hi = _bare(x[i])
        out["covered_before"] += lo <= true[i] <= hi
        out["zero_width_before"] += lo == hi
        e = estimate.median(x[i], tick=tick)
        out["covered_now"] += e.resolved and e.lo <= true[i] <= e.hi
        out["marked_now"] += not e.resolved
        if i < ratio_trials:
            r0, r1 = estimate.ratio(y[i], x[i]), estimate.ratio(y[i], x[i], tick=tick)
            out["ratio_before"] += r0.resolved and r0.lo <= 1.2 <= r0.hi
            out["ratio_now"] += r1.resolved and r1.lo <= 1.2 <= r1.hi or not r1.resolved
    return {k: v / (ratio_trials if k.startswith("ratio") else trials) for k, v in out.items()}


def _bare(x: np.ndarray) -> tuple[float, float]:
    """The interval before: order statistics, no tick."""
    from harness.stats.quantile import quantile_ci

    return quantile_ci(x)


# -- slopes ------------------------------------------------------------------------------------------
def noise(kind: str, rng: np.random.Generator, n: int) -> np.ndarray:
    e = rng.normal(0, 1, n)
    if kind == "AR(1) 0.7":
        out = np.empty(n)
        out[0] = e[0] / math.sqrt(1 - 0.49)
        for i in range(1, n):
            out[i] = 0.7 * out[i - 1] + e[i]
        return out
    return np.cumsum(e) if kind == "random walk" else e


def slope_rates(rng: np.random.Generator, trials: int, points: int, kind: str) -> dict[str, float]:
    """A ramp of ``points`` instances, 2 MiB each, with noise of sd 1 MiB: Sen's interval before
    (resolved and covering) and now (a printed interval that misses, and how often one is printed)."""
    from scipy import stats

    x = np.arange(points, dtype=float)
    res_b = miss_b = miss_now = printed = 0
    for _ in range(trials):
        y = 2.0 * x + noise(kind, rng, points)
        r = stats.theilslopes(y, x, alpha=0.95)
        resolved = r.high_slope - r.low_slope <= abs(r.slope)
        res_b += resolved
        miss_b += resolved and not r.low_slope <= 2.0 <= r.high_slope
        s = slopes.theil_sen(x, y)
        printed += s.resolved
        miss_now += s.resolved and not s.lo <= 2.0 <= s.hi
    return {"resolved_before": res_b / trials, "missed_before": miss_b / trials,
            "printed_now": printed / trials, "missed_now": miss_now / trials}


def ramps(rng: np.random.Generator, trials: int, k: int = 3, points: int = 17) -> tuple[float, float]:
    """``k`` ramps whose slope varies by ramp (sd 0.3 MiB: what a ramp's host state shares): the
    pooled Theil–Sen over all points before, the ramp as the unit now; coverage of the mean slope."""
    from scipy import stats

    x = np.arange(points, dtype=float)
    cov_b = cov_n = 0
    for _ in range(trials):
        ys = [(2.0 + rng.normal(0, 0.3)) * x + rng.normal(0, 1, points) for _ in range(k)]
        r = stats.theilslopes(np.concatenate(ys), np.tile(x, k), alpha=0.95)
        cov_b += r.low_slope <= 2.0 <= r.high_slope
        s = slopes.over_ramps([(x, y) for y in ys])
        cov_n += s.lo <= 2.0 <= s.hi or not s.resolved
    return cov_b / trials, cov_n / trials


# -- sees >= -------------------------------------------------------------------------------------------
def sees_check(rng: np.random.Generator, trials: int, k: int = 4) -> tuple[float, float]:
    """"sees >=" read off an A/A session of K paired runs a side, then that change made to one series
    of 80: how often it is found (the statement: 80 %)."""
    fam = judge({i: SeriesData(list(a), list(b), LOWER, "ms") for i, (a, b) in
                 enumerate(zip(runs(rng, G, k), runs(rng, G, k), strict=True))}, paired=True)
    sees = float(np.nanmedian([j.sees for j in fam.judged.values()]))
    found = power(rng, trials, changed=1, change=sees, ka=k, kb=k, paired=True)
    return sees, found


# -- the table -----------------------------------------------------------------------------------------
def table(scale: float = 1.0) -> list[Result]:
    """Every row; ``scale`` multiplies the trial counts (the test suite runs 1.0)."""
    def t(n: int) -> int:
        return max(10, int(n * scale))

    rng = np.random.default_rng(20261207)
    out: list[Result] = []
    for cal in (2, 3, 6):
        before_p, before_fw = before_calibrated(rng, t(150), cal)
        now_p, now_fw, n = rates(rng, t(150), ka=1, kb=1, cal=cal)
        out.append(Result(f"A/A, 1 vs 1 run, calibrated from {cal} runs: per-series p < 0.05", n, before_p, now_p,
                          "≤ 6 %" if cal <= 3 else ""))
        out.append(Result(f"A/A, 1 vs 1 run, calibrated from {cal} runs: family of 80 with an alarm", t(150),
                          before_fw, now_fw, "≤ 10 %" if cal <= 3 else ""))
    for ka, kb in ((2, 2), (3, 3), (1, 3)):
        before = before_pooled(rng, t(600), ka, kb)
        now_p, _, n = rates(rng, t(30), ka=ka, kb=kb)
        out.append(Result(f"A/A, {ka} vs {kb} runs pooled, uncalibrated: per-series p < 0.05", n, before, now_p,
                          before_trials=t(600)))
    for k in (3, 4):
        now_p, now_fw, n = rates(rng, t(200), ka=k, kb=k, paired=True)
        out.append(Result(f"A/A, isobench ab K={k} paired: per-series p < 0.05", n, None, now_p, "≤ 6 %"))
        out.append(Result(f"A/A, isobench ab K={k} paired: family of 80 with an alarm", t(200), None, now_fw,
                          "≤ 10 %"))
        trials = t(60)
        out.append(Result(f"15 % slower, isobench ab K={k}: found (8 of 80 series changed)", trials * 8, None,
                          power(rng, trials, 8, ka=k, kb=k, paired=True), "≥ 80 %"))
        out.append(Result(f"15 % slower, isobench ab K={k}: found (1 of 80 changed)", trials, None,
                          power(rng, trials, 1, ka=k, kb=k, paired=True)))
    trials = t(40)
    out.append(Result("15 % slower, 1 vs 1 run calibrated from 3: found (8 of 80 changed)", trials * 8, None,
                      power(rng, trials, 8, ka=1, kb=1, cal=3)))
    b, now, n = normalised(rng, t(8))
    out.append(Result("A/A normalised, no run-to-run variation: per-series p < 0.05", n, b, now, "≈ 5 %"))
    q = quantised(rng, t(1000))
    out.append(Result("median interval, 0.1 ms ticks, n = 40: covers", t(1000), q["covered_before"],
                      q["covered_now"] + q["marked_now"], "≥ 93 % or marked", "coverage"))
    out.append(Result("median interval, 0.1 ms ticks, n = 40: zero width", t(1000), q["zero_width_before"], 0.0))
    out.append(Result("ratio interval, 0.1 ms ticks, n = 40: covers or marked", min(t(1000), 150), q["ratio_before"],
                      q["ratio_now"], "", "coverage"))
    for points, kind in ((3, "independent"), (17, "independent"), (17, "AR(1) 0.7"), (17, "random walk"),
                         (8, "random walk")):
        s = slope_rates(rng, t(400), points, kind)
        out.append(Result(f"slope, {points} points, {kind}: interval printed", t(400), s["resolved_before"],
                          s["printed_now"]))
        out.append(Result(f"slope, {points} points, {kind}: printed and missing the slope", t(400),
                          s["missed_before"], s["missed_now"], "≤ 10 %"))
    b, now = ramps(rng, t(300))
    out.append(Result("slope of 3 ramps whose slope varies by ramp: covers or not resolved", t(300), b, now, "≥ 90 %",
                      "coverage"))
    sees, found = sees_check(rng, t(60))
    out.append(Result(f"sees ≥ {sees:.1%} (ab K=4): a change of that size found", t(60), None, found, "≈ 80 %"))
    return out


def markdown(results: list[Result]) -> str:
    lines = ["| what (trials) | before issue 23 | now | target |", "|---|---|---|---|"]
    for r in results:
        trials = f"{r.trials}" + (f"; before: {r.before_trials}" if r.before_trials else "")
        lines.append(f"| {r.name} ({trials}) | {r.cell(r.before, r.before_trials)} | {r.cell(r.now)} | {r.target} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    import time

    t0 = time.monotonic()
    print(markdown(table(float(argv[0]) if argv else 1.0)))
    print(f"({time.monotonic() - t0:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
