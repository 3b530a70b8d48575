"""``isobench floor [BENCH]``: the floor of a container launch, one kernel primitive a line (``harness.floor``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "print the floor of a launch (a lower bound from `nox -s microbench`), one primitive a line"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("bench", nargs="?", type=Path, default=None, metavar="BENCH",
                   help="a pytest-benchmark JSON, or a directory: its newest (default: .benchmarks/)")


def main(args: argparse.Namespace) -> int:
    from harness import floor

    try:
        lines = floor.lines(args.bench or floor.BENCH_DIR)
    except floor.FloorError as e:
        print(f"isobench floor: {e}", file=sys.stderr)
        return 2
    for name, ms, why in lines:
        print(f"{name:<26} {ms:9.3f} ms  {why}")
    return 0
