"""``isobench compare BASE NEW`` (and ``--calibrate RUN RUN …``): the A/B comparison of ``harness.compare``.

Exit status: 1 only when something regressed, 0 otherwise, 2 with one line on
unreadable input.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.cli import number
from harness.compare import NOISE_FILE, NOISE_SCHEMA, calibrate, compare, read_noise, reference_of
from harness.stats import ALPHA, BOOTSTRAPS, MIN_N_CI, THRESHOLD

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

HELP = "A/B-compare runs series by series; exit 1 only on a significant regression"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="+", type=str, metavar="RUN",
                   help="BASE NEW (each may be several run directories, comma-separated); "
                        "with --calibrate: two or more runs of the same commit")
    p.add_argument("--threshold", type=number(float, 0, 10), default=THRESHOLD,
                   help="smallest relative change of a median that counts (default 0.05 = 5%%)")
    p.add_argument("--alpha", type=number(float, 0, 0.5, above=True), default=ALPHA,
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
    p.add_argument("--bootstraps", type=number(int, 1), default=BOOTSTRAPS, metavar="N",
                   help=f"bootstrap resamples per series for the intervals (default {BOOTSTRAPS})")
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
    from harness.stats.abtest import REGRESSION

    return 1 if any(r.verdict == REGRESSION for r in rows) else 0


def _write_calibration(args: argparse.Namespace, frames: list[pd.DataFrame], reference: str | None) -> int:
    path = args.noise or NOISE_FILE
    data = {"schema": NOISE_SCHEMA, "runs": args.runs, "reference": reference,
            "raw": calibrate(frames), "normalised": calibrate(frames, reference) if reference else {}}
    if not data["raw"]:
        return _fail(f"the {len(frames)} runs share no series with {MIN_N_CI}+ samples in two runs or more")
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
