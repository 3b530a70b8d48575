"""``isobench soak [SCENARIO]``: a long run, and what the harness, its helpers and the kernel hold along it.

Runs the scenario (default ``scenarios/soak.toml``: 10,000 container launches, 1,000 on
oci:crun, 100 guests) as ``isobench run`` does, with ``harness.soak.sampler`` reading
resources between launches, then prints start, end and the slope per 1,000 launches of each
quantity (``harness.soak.analysis``) and writes them to ``soak.md``/``soak.json`` in the run
directory.  ``--scale 0.2`` runs a fifth of every experiment's launches.

``--inject-leak N`` is the self-test: the harness holds one more open file every N launches,
and the analysis must call ``harness/fds`` a leak.

Exit status: 0 when nothing leaks and nothing of the run is left (with ``--inject-leak``: when
the injected leak was found), 1 otherwise, 2 with one line on bad input.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tomllib
from dataclasses import asdict
from pathlib import Path
from typing import Any

from harness.cli import number
from harness.commands import run as run_command
from harness.errors import UserError

HELP = "a long run (scenarios/soak.toml) sampling the harness's and its helpers' memory, fds, threads and kernel objects"
DEFAULT_SCENARIO = "scenarios/soak.toml"
#: the quantity the self-test leaks
INJECTED = "harness/fds"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("scenario", nargs="?", default=DEFAULT_SCENARIO, help=f"scenario file (default {DEFAULT_SCENARIO})")
    p.add_argument("--backends", help="comma-separated subset of the scenario's backends")
    p.add_argument("--results", type=Path, default=run_command.DEFAULT_RESULTS, help="results directory (default: results/)")
    p.add_argument("--run-id", help="name of the run directory (default: date-time-random)")
    p.add_argument("--skip-unavailable", action="store_true", help="drop backends that cannot run here")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--every", type=number(int, 1), default=10, metavar="N", help="a reading every N launches (default 10)")
    p.add_argument("--scale", type=number(float, 0, 1, above=True), default=1.0, metavar="F",
                   help="run this fraction of every experiment's repetitions (a provisional, shorter soak)")
    p.add_argument("--inject-leak", type=number(int, 1), default=None, metavar="N",
                   help="self-test: hold one more open file every N launches; the analysis must see it")


def scaled(path: str, scale: float) -> Any:
    """The scenario, each experiment's repetitions (and the default) times ``scale`` (at least 1)."""
    import tomli_w

    from harness import scenario
    from runtimes.userpaths import read_regular

    if scale == 1.0:
        return scenario.load(path)
    try:
        data = tomllib.loads(read_regular(path).decode())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return scenario.load(path)  # the one-line error of a plain load
    listed = data.get("experiment")
    experiments = [e for e in listed if isinstance(e, dict)] if isinstance(listed, list) else []
    overrides = [o for e in experiments if isinstance(e.get("overrides"), dict) for o in e["overrides"].values()]
    for table in [data.get("scenario", {}), *experiments, *overrides]:
        if isinstance(table, dict) and isinstance(table.get("repetitions"), int):
            table["repetitions"] = max(1, round(table["repetitions"] * scale))
    text = f"# {path}, repetitions scaled by {scale:g} (isobench soak --scale)\n" + tomli_w.dumps(data)
    return scenario.parse(data, path, text)


class _Leak:
    """The self-test's leak: one more open file every ``every`` steps, all closed at the end."""

    def __init__(self, every: int):
        self.every = every
        self.fds: list[int] = []

    def __call__(self, done: int, *_: object) -> None:
        if done and done % self.every == 0:
            self.fds.append(os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC))

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)


def main(args: argparse.Namespace) -> int:
    from harness import runner
    from harness.results import ResultsError
    from harness.soak import analysis
    from harness.soak.sampler import Sampler, left, load

    sc = scaled(args.scenario, args.scale)
    names = run_command.targets(args)
    sampler, leak = Sampler(args.every), _Leak(args.inject_leak) if args.inject_leak else None

    def observe(done: int, step: Any, backends: Any, run_dir: Path) -> None:
        if leak is not None and step is not None:
            leak(done)
        sampler(done, step, backends, run_dir)

    try:
        run_dir = runner.run(sc, args.results, names, False if args.no_progress else None,
                             args.skip_unavailable, args.run_id, observe=observe)
    except ResultsError as e:
        print(f"isobench: error: {e}", file=sys.stderr)
        return 1
    finally:
        if leak is not None:
            leak.close()
    figs = analysis.figures(load(run_dir))
    remaining = left(run_dir.name)
    text = analysis.table(figs)
    doc = {"every": args.every, "scale": args.scale, "inject_leak": args.inject_leak, "warmup": analysis.WARMUP,
           "launches": sampler.launches, "left": remaining,
           "figures": [{k: None if isinstance(v, float) and math.isnan(v) else v for k, v in asdict(f).items()}
                       for f in figs]}
    try:
        (run_dir / "soak.md").write_text(text + "\n")
        (run_dir / "soak.json").write_text(json.dumps(doc, indent=1) + "\n")
    except OSError as e:
        print(f"isobench: error: cannot write the soak's figures into {run_dir}: {e.strerror}", file=sys.stderr)
        return 1
    print(text)
    print(run_dir)
    return _verdict(figs, remaining, args.inject_leak is not None)


def _verdict(figs: list[Any], remaining: list[str], self_test: bool) -> int:
    from harness.soak import analysis

    leaked = {f.quantity for f in analysis.leaks(figs)}
    for what in remaining:
        print(f"isobench soak: left after the run: {what}", file=sys.stderr)
    if self_test:  # what else a short run flags (a warm-up's growth) is shown, not held against it
        ok = INJECTED in leaked
        print(f"isobench soak: self-test {'passed' if ok else 'FAILED'}: leaks found: {sorted(leaked) or 'none'} "
              f"(injected: {INJECTED})", file=sys.stderr)
        return 0 if ok and not remaining else 1
    for q in sorted(leaked):
        print(f"isobench soak: LEAK: {q}", file=sys.stderr)
    if not figs:
        raise UserError("soak: no readings (did the run launch anything?)")
    return 1 if leaked or remaining else 0
