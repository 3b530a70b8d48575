"""``isobench cleanup [--run-id ID]``: remove what crashed runs left behind."""

from __future__ import annotations

import argparse

HELP = "remove what crashed runs left (cgroups, processes, mounts, domains)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run-id", help="only what this run left")


def main(args: argparse.Namespace) -> int:
    from harness import cleanup

    owner = cleanup.live_run(args.run_id) if args.run_id else None
    if owner is not None:
        print(f"isobench cleanup: run {args.run_id} is live (harness pid {owner.pid}): nothing of it is touched")
    removed = cleanup.cleanup(args.run_id)
    for line in removed:
        print(f"removed {line}")
    print(f"isobench cleanup: removed {len(removed)} item(s)")
    return 0
