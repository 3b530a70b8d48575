"""``isobench compare BASE NEW``: an A/B comparison with a known false-alarm rate.

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

Exit status: 1 only when something regressed, 0 otherwise, 2 with one line on
unreadable input.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness import abtest
from harness.metric import HIGHER, LOWER, NONE, ONE
from harness.numbers import number

__all__ = ["HIGHER", "LOWER", "NONE", "ONE", "compare", "direction", "calibrate"]

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

HELP = "A/B-compare runs series by series; exit 1 only on a significant regression"
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


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="+", type=str, metavar="RUN",
                   help="BASE NEW (each may be several run directories, comma-separated); "
                        "with --calibrate: two or more runs of the same commit")
    p.add_argument("--threshold", type=number(float, 0, 10), default=abtest.THRESHOLD,
                   help="smallest relative change of a median that counts (default 0.05 = 5%%)")
    p.add_argument("--alpha", type=number(float, 0, 0.5, above=True), default=abtest.ALPHA,
                   help="significance level after the correction (default 0.05: a 5%% false discovery rate)")
    p.add_argument("--correction", choices=("bh", "holm"), default="bh",
                   help="multiple-testing correction across series (default bh: Benjamini–Hochberg)")
    p.add_argument("--noise", type=Path, default=None, metavar="FILE",
                   help=f"run-to-run variation from --calibrate (default {NOISE_FILE} when it exists)")
    p.add_argument("--calibrate", action="store_true",
                   help="learn each series' run-to-run variation from A/A runs (3 or more) and write it to --noise")
    p.add_argument("--normalise", nargs="?", const="", default=None, metavar="BACKEND",
                   help="divide by the median of the reference backend in the same run "
                        "(default: the scenario's `reference`)")
    p.add_argument("--bootstraps", type=number(int, 1), default=abtest.BOOTSTRAPS, metavar="N",
                   help=f"bootstrap resamples per series for the intervals (default {abtest.BOOTSTRAPS})")
    p.add_argument("--markdown", type=Path, metavar="FILE", help="also write the Markdown table to FILE")
    p.add_argument("--out", type=Path, metavar="DIR",
                   help="where compare.html/compare.md go (default: reports/compare-BASE-vs-NEW)")
    p.add_argument("--all", action="store_true", dest="show_all",
                   help="also list metrics without a better direction (counts set by the case)")


def _fail(msg: str) -> int:
    print(f"isobench compare: {msg}", file=sys.stderr)
    return 2


def _load(spec: str) -> tuple[list[pd.DataFrame], list[dict[str, Any]]]:
    from harness.results import load, read_manifest

    paths = [Path(s) for s in spec.split(",") if s]
    return [load(p) for p in paths], [read_manifest(p) for p in paths]


def _reference(arg: str | None, manifests: list[dict[str, Any]]) -> str | None:
    if arg is None:
        return None
    if arg and Path(arg).is_dir():  # `--normalise A B`: argparse took the first run for a backend
        raise ValueError(f"--normalise takes a backend name, not the run {arg}: write the runs first "
                         "(compare A B --normalise) or --normalise=BACKEND")
    if arg:
        return arg
    refs = {reference_of(m) for m in manifests}
    if len(refs) != 1 or None in refs:
        raise ValueError("--normalise: the runs' scenarios name no single `reference` backend; "
                         "pass --normalise BACKEND")
    return refs.pop()


def main(args: argparse.Namespace) -> int:
    from harness.results import ResultsError

    if not 0 <= args.threshold < 10 or not 0 < args.alpha < 0.5:
        return _fail("--threshold must be in [0, 10) and --alpha in (0, 0.5)")
    try:
        reference_arg = _reference(args.normalise, []) if args.normalise else args.normalise
    except ValueError as e:
        return _fail(str(e))
    if args.calibrate and len(args.runs) < 2 or not args.calibrate and len(args.runs) != 2:
        return _fail("give BASE NEW, or --calibrate with two or more runs")
    try:
        loaded = [_load(s) for s in args.runs]
        reference = _reference(reference_arg, [m for _, ms in loaded for m in ms])
    except (ResultsError, OSError, ValueError) as e:
        return _fail(str(e))
    if args.calibrate:
        if reference is None:  # store the normalised variation too whenever the scenario names a reference
            refs = {reference_of(m) for _, ms in loaded for m in ms}
            reference = refs.pop() if len(refs) == 1 else None
        return _write_calibration(args, [df for dfs, _ in loaded for df in dfs], reference)
    noise_path = args.noise or (NOISE_FILE if NOISE_FILE.exists() else None)
    try:
        noise = read_noise(noise_path, reference is not None) if noise_path else {}
    except (OSError, ValueError, KeyError) as e:
        return _fail(f"cannot read the noise file: {e}")
    rows = compare(loaded[0][0], loaded[1][0], args.threshold, args.alpha, noise=noise,
                   correction=args.correction, reference=reference,
                   bootstraps=max(99, args.bootstraps))
    if not any(r.verdict not in ("only in base", "only in new") for r in rows):
        return _fail(f"{args.runs[0]} and {args.runs[1]} have no series in common")
    import runtimes
    from harness.report.compare_table import markdown

    text = markdown(rows, args.runs[0], args.runs[1], args.threshold, args.alpha,
                    getattr(args, "show_all", False), correction=args.correction,
                    noise=str(noise_path) if noise_path else None, reference=reference,
                    yardstick=runtimes.memory_reference())
    print(text)
    if args.markdown:
        try:
            args.markdown.parent.mkdir(parents=True, exist_ok=True)
            args.markdown.write_text(text)
        except OSError as e:
            return _fail(f"cannot write {args.markdown}: {e.strerror}")
    from harness.report import compare_page

    first = [Path(r.split(",")[0]) for r in args.runs]
    out = getattr(args, "out", None) or compare_page.default_out(first[0], first[1])
    try:
        shown: list[Any] = list(rows)  # frozen rows: read-only fields satisfy the page's protocol
        page = compare_page.write(shown, args.runs[0], args.runs[1], text, out)
        print(f"isobench compare: page {page}", file=sys.stderr)  # stdout stays the Markdown table
    except OSError as e:
        return _fail(f"cannot write the page under {out}: {e.strerror}")
    return 1 if any(r.verdict == abtest.REGRESSION for r in rows) else 0


def _write_calibration(args: argparse.Namespace, frames: list[pd.DataFrame], reference: str | None) -> int:
    path = args.noise or NOISE_FILE
    data = {"schema": NOISE_SCHEMA, "runs": args.runs, "reference": reference,
            "raw": calibrate(frames), "normalised": calibrate(frames, reference) if reference else {}}
    if not data["raw"]:
        return _fail(f"the {len(frames)} runs share no series with {abtest.MIN_N_CI}+ samples in two runs or more")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    except OSError as e:
        return _fail(f"cannot write {path}: {e.strerror}")
    worst = sorted(data["raw"].items(), key=lambda kv: -kv[1]["run_sd"])[:5]
    print(f"isobench compare: run-to-run variation of {len(data['raw'])} series from {len(frames)} runs "
          f"written to {path}; largest (sd of a run's median): "
          + ", ".join(f"{k} ±{math.expm1(v['run_sd']):.1%}" for k, v in worst))
    return 0
