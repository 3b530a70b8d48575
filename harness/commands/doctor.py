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
    p.add_argument("--backends", help="comma-separated: prepare and check only these backends (default: all; "
                                      "a fleet host prepares what its scenario runs)")


def main(args: argparse.Namespace) -> int:
    import runtimes
    from harness import doctor
    from harness.errors import UserError

    names = [b.strip() for b in args.backends.split(",") if b.strip()] if args.backends else None
    unknown = [b for b in names or () if not runtimes.known(b)]
    if unknown:
        raise UserError(f"--backends: unknown backend {unknown[0]!r} (known: {', '.join(runtimes.names())})")
    return doctor.examine(fix=args.fix, probe=not args.no_probe, backends=names)
