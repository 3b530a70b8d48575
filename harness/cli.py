"""``isobench`` command line: one module per command under ``harness.commands``.

Heavy imports (pandas, matplotlib, libvirt) happen inside the commands, so
``isobench --help`` and bad-input errors stay fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from harness.errors import UserError

#: every command: name -> module with HELP, add_arguments(parser) and main(args) -> int
#: (``harness.commands``); the order here is the order of ``isobench --help``
COMMANDS = {
    "run": "harness.commands.run",
    "doctor": "harness.commands.doctor",
    "cleanup": "harness.commands.cleanup",
    "exec": "harness.commands.exec",
    "report": "harness.commands.report",
    "compare": "harness.commands.compare",
    "validate": "harness.commands.validate",
    "matrix": "harness.commands.matrix",
    "floor": "harness.commands.floor",
    "image": "harness.commands.image",
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="isobench",
        description="Startup latency, memory overhead and cgroup-enforcement accuracy of "
                    "bare metal, containers and VMs, side by side.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module in COMMANDS.items():
        try:
            mod = importlib.import_module(module)
        except ImportError:  # an optional dependency missing must not break the other commands
            continue
        sp = sub.add_parser(name, help=mod.HELP)
        mod.add_arguments(sp)
        sp.set_defaults(func=mod.main)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from harness.scenario import ScenarioError
    from runtimes.base import BackendError
    from runtimes.cgroups import CgroupError

    try:
        return int(args.func(args) or 0)
    except (UserError, ScenarioError, CgroupError) as e:
        print(f"isobench: error: {e}", file=sys.stderr)
        return 2
    except BackendError as e:
        print(f"isobench: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("isobench: interrupted", file=sys.stderr)
        return 130
