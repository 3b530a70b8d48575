"""``isobench cleanup [--run-id ID]``: remove what crashed runs left behind."""

from __future__ import annotations

import argparse

HELP = "remove what crashed runs left (cgroups, processes, mounts, domains)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run-id", help="only what this run left")


def main(args: argparse.Namespace) -> int:
    from harness import cleanup

    removed = cleanup.cleanup(args.run_id)
    for line in removed:
        print(f"removed {line}")
    print(f"isobench cleanup: removed {len(removed)} item(s)")
    return 0
