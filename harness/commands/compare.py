"""``isobench compare BASE NEW`` (and ``--calibrate RUN RUN …``): the A/B comparison of ``harness.compare``.

Exit status: 1 only when something regressed, 0 otherwise, 2 with one line on
unreadable input.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.cli import number
from harness.compare import NOISE_FILE, calibrate, comparison, plan_line, reference_of
from harness.errors import UserError
from harness.stats import ALPHA, BOOTSTRAPS, MIN_N_CI, THRESHOLD
from runtimes.userpaths import PathRefused, check_output_dir, check_output_file

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from harness.compare import Comparison
    from harness.stats.calibration import Calibration

HELP = "A/B-compare runs series by series; exit 1 only on a significant regression"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="+", type=str, metavar="RUN",
                   help="BASE NEW (each may be several run directories, comma-separated); "
                        "with --calibrate: two or more runs of the same commit")
    add_common(p)
    p.add_argument("--noise", type=Path, default=None, metavar="FILE",
                   help="apply the run-to-run variation learned by --calibrate (never applied unless named; "
                        f"--calibrate writes {NOISE_FILE} by default)")
    p.add_argument("--calibrate", action="store_true",
                   help="learn each series' run-to-run variation from A/A runs (3 or more) and write it to --noise")
    p.add_argument("--normalise", nargs="?", const="", default=None, metavar="BACKEND",
                   help="divide by the median of the reference backend in the same run "
                        "(default: the scenario's `reference`)")
    p.add_argument("--bootstraps", type=number(int, 1), default=BOOTSTRAPS, metavar="N",
                   help=f"bootstrap resamples per series for the intervals (default {BOOTSTRAPS})")
    p.add_argument("--out", type=Path, metavar="DIR",
                   help="where compare.html/compare.md go (default: reports/compare-BASE-vs-NEW)")


def add_common(p: argparse.ArgumentParser) -> None:
    """The options ``isobench ab`` shares with compare: the verdicts' level, margin and correction, the
    outputs, planning and the validation facility."""
    p.add_argument("--threshold", type=number(float, 0, 10), default=THRESHOLD,
                   help="smallest relative change of a median that counts (default 0.05 = 5%%)")
    p.add_argument("--alpha", type=number(float, 0, 0.5, above=True), default=ALPHA,
                   help="significance level after the correction (default 0.05: a 5%% false discovery rate)")
    p.add_argument("--correction", choices=("bh", "holm"), default="bh",
                   help="multiple-testing correction across series (default bh: Benjamini–Hochberg)")
    p.add_argument("--markdown", type=Path, metavar="FILE", help="also write the Markdown table to FILE")
    p.add_argument("--all", action="store_true", dest="show_all",
                   help="also list metrics without a better direction (counts set by the case)")
    p.add_argument("--see", type=number(float, 0, 10, above=True), default=0.10, metavar="CHANGE",
                   help="the change the planning line sizes the runs for (default 0.10 = 10%%)")
    p.add_argument("--inject", action="append", default=[], metavar="SPEC",
                   help="validation only: multiply the new side's values, e.g. "
                        "backend=container,metric=launch_to_ready,factor=1.15 (said in every output)")




def fail(msg: str, command: str = "compare") -> int:
    print(f"isobench {command}: {msg}", file=sys.stderr)
    return 2


def _load(spec: str) -> tuple[list[pd.DataFrame], list[dict[str, Any]]]:
    """The runs of one side; a fleet (``isobench fleet``) stands for its hosts' runs, each row marked
    with its host (``split``), so that each host is compared with the same host on the other side."""
    from harness.compare import wanted
    from harness.fleet.manifest import runs_of
    from harness.results import load, read_manifest

    frames, manifests = [], []
    for s in spec.split(","):
        for host, path in runs_of(s) if s else ():
            df = load(path, warmups=False, columns=wanted)
            if host is not None:
                df["split"] = host
            frames.append(df)
            manifests.append(read_manifest(path))
    return frames, manifests


def _fleets(loaded: list[tuple[list[pd.DataFrame], list[dict[str, Any]]]]) -> list[bool]:
    """Per side: whether it is made of fleets' hosts (their rows carry a ``split``)."""
    return [bool(dfs) and all("split" in df.columns for df in dfs) for dfs, _ in loaded]


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
        return fail("--threshold must be in [0, 10) and --alpha in (0, 0.5)")
    try:
        reference_arg = _reference(args.normalise, []) if args.normalise else args.normalise
    except ValueError as e:
        return fail(str(e))
    if args.calibrate and len(args.runs) < 2 or not args.calibrate and len(args.runs) != 2:
        return fail("give BASE NEW, or --calibrate with two or more runs")
    try:
        check_outputs(args, "--noise" if args.calibrate else None)
    except PathRefused as e:
        return fail(str(e))
    try:
        loaded = [_load(s) for s in args.runs]
        reference = _reference(reference_arg, [m for _, ms in loaded for m in ms])
    except (ResultsError, OSError, ValueError) as e:
        return fail(str(e))
    fleets = _fleets(loaded)
    if any(fleets) and (args.calibrate or not all(fleets)):
        return fail("a fleet compares with a fleet, host by host (give a host's run, fleet-ID/HOST, to compare "
                    "it with a run; --calibrate takes runs of one host)")
    if args.calibrate:
        if reference is None:  # store the normalised variation too whenever the scenario names a reference
            refs = {reference_of(m) for _, ms in loaded for m in ms}
            reference = refs.pop() if len(refs) == 1 else None
        return _write_calibration(args, loaded, reference)
    try:
        noise, notes = _calibration(args.noise, [m for _, ms in loaded for m in ms])
        injected = injections(args.inject)
    except UserError as e:
        return fail(str(e))
    from harness.ab.inject import applied

    c = comparison(loaded[0][0], applied(loaded[1][0], injected), args.threshold, args.alpha, noise=noise,
                   correction=args.correction, reference=reference, bootstraps=max(99, args.bootstraps))
    if not any(r.verdict not in ("only in base", "only in new") for r in c.rows):
        return fail(f"{args.runs[0]} and {args.runs[1]} have no series in common")
    return report(args, c, notes, injected, noise, reference)


def check_outputs(args: argparse.Namespace, calibration: str | None = None) -> None:
    """Every file and directory the command would write, before any run is read (``PathRefused``):
    the calibration (named by the option ``calibration``), or the Markdown table and the page."""
    from harness.report import compare_page

    if calibration is not None:
        check_output_file(args.noise or NOISE_FILE, calibration)
        return
    if args.markdown:
        check_output_file(args.markdown, "--markdown")
    first = [Path(r.split(",")[0]) for r in args.runs]
    check_output_dir(getattr(args, "out", None) or compare_page.default_out(first[0], first[1]), "--out")


def injections(specs: list[str]) -> list[Any]:
    from harness.ab.inject import Injection

    return [Injection.parse(s) for s in specs]


def _calibration(path: Path | None, manifests: list[dict[str, Any]]) -> tuple[Calibration | None, list[str]]:
    """The calibration named by --noise, checked against the compared runs: refused (``UserError``)
    when it holds one of them, with a note for each way it was learned elsewhere; none unless named."""
    from harness.stats.calibration import CalibrationError, read

    if path is None:
        notes = [f"a calibration exists at {NOISE_FILE}; it is applied only when named (--noise {NOISE_FILE})"] \
            if NOISE_FILE.exists() else []
        return None, notes
    try:
        cal = read(path)
    except CalibrationError as e:
        raise UserError(str(e)) from None
    refusal = cal.refusal([str(m.get("run_id")) for m in manifests])
    if refusal:
        raise UserError(refusal)
    return cal, cal.warnings(manifests)


def report(args: argparse.Namespace, c: Comparison, notes: list[str], injected: list[Any],
           noise: Calibration | None, reference: str | None, paired: bool = False) -> int:
    """Print the table (and write it and the page); exit 1 only when something regressed."""
    import runtimes
    from harness.ab.inject import notice
    from harness.report.compare_table import markdown

    rows = c.rows
    plan = plan_line(c, args.see, args.threshold, paired)
    text = markdown(rows, args.runs[0], args.runs[1], args.threshold, args.alpha,
                    getattr(args, "show_all", False), correction=args.correction,
                    noise=noise.path if noise else None, reference=reference,
                    yardstick=runtimes.reference(),
                    notes=[n for n in (notice(injected), *notes, plan) if n])
    print(text)
    if args.markdown:
        try:
            args.markdown.parent.mkdir(parents=True, exist_ok=True)
            args.markdown.write_text(text)
        except OSError as e:
            return fail(f"cannot write {args.markdown}: {e.strerror}")
    from harness.report import compare_page

    first = [Path(r.split(",")[0]) for r in args.runs]
    out = getattr(args, "out", None) or compare_page.default_out(first[0], first[1])
    try:
        shown: list[Any] = list(rows)  # frozen rows: read-only fields satisfy the page's protocol
        page = compare_page.write(shown, args.runs[0], args.runs[1], text, out)
        print(f"isobench compare: page {page}", file=sys.stderr)  # stdout stays the Markdown table
    except OSError as e:
        return fail(f"cannot write the page under {out}: {e.strerror}")
    from harness.stats.abtest import REGRESSION

    return 1 if any(r.verdict == REGRESSION for r in rows) else 0


def _write_calibration(args: argparse.Namespace, loaded: list[tuple[list[pd.DataFrame], list[dict[str, Any]]]],
                       reference: str | None) -> int:
    from harness.stats.calibration import Calibration, host_of, scenario_of, write

    frames = [df for dfs, _ in loaded for df in dfs]
    manifests = [m for _, ms in loaded for m in ms]
    path = args.noise or NOISE_FILE
    raw, g_eff = calibrate(frames)
    if not raw:
        return fail(f"the {len(frames)} runs share no series with {MIN_N_CI}+ samples in two runs or more")
    hosts, scenarios = [host_of(m) for m in manifests], [scenario_of(m) for m in manifests]
    cal = Calibration(raw, calibrate(frames, reference)[0] if reference else {}, reference,
                      tuple(str(m.get("run_id")) for m in manifests), hosts[0], scenarios[0], g_eff, str(path))
    try:
        write(path, cal)
    except OSError as e:
        return fail(f"cannot write {path}: {e.strerror}")
    worst = sorted(raw.items(), key=lambda kv: -kv[1].var)[:5]
    mixed = [w for w, xs in (("hosts", hosts), ("scenarios", scenarios)) if len({str(x) for x in xs}) > 1]
    print(f"isobench compare: run-to-run variation of {len(raw)} series from {len(frames)} runs "
          f"written to {path}; largest (sd of a run's median): "
          + ", ".join(f"{k} ±{math.expm1(v.run_sd):.1%}" for k, v in worst)
          + (f"; warning: the runs come from different {' and '.join(mixed)}" if mixed else ""))
    return 0
