"""``isobench doctor [--fix]``: check (and prepare) this host.

Runs under the system Python (``.ci/run`` calls it before any virtual
environment exists): standard library only.
"""

from __future__ import annotations

import argparse

HELP = "check (and with --fix, prepare) this host"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fix", action="store_true", help="install missing packages and start daemons")
    p.add_argument("--no-probe", action="store_true", help="skip the KVM boot probe")


def main(args: argparse.Namespace) -> int:
    from harness import doctor

    return doctor.examine(fix=args.fix, probe=not args.no_probe)
