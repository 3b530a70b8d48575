"""``isobench`` command line: one module per command under ``harness.commands``.

Heavy imports (pandas, matplotlib, libvirt) happen inside the commands, so
``isobench --help`` and bad-input errors stay fast.
"""

from __future__ import annotations

import argparse
import importlib
import math
import sys
from collections.abc import Callable
from typing import NoReturn

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
    "results": "harness.commands.results",
    "history": "harness.commands.history",
    "ab": "harness.commands.ab",
    "validate": "harness.commands.validate",
    "matrix": "harness.commands.matrix",
    "floor": "harness.commands.floor",
    "image": "harness.commands.image",
    "soak": "harness.commands.soak",
    "fleet": "harness.commands.fleet",
}


class _Parser(argparse.ArgumentParser):
    """Bad options are one line, like every other error (``isobench: error: …``), not a usage dump."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def number(kind: type[int] | type[float], low: float | None = None, high: float | None = None, *,
           above: bool = False) -> Callable[[str], float]:
    """An argparse ``type=`` for the commands' numeric options: a finite ``kind`` within
    [``low``, ``high``] (``above``: strictly greater than ``low``).  ``nan``, ``inf`` and ``-1``
    all parse as numbers; each would become a traceback (``round(nan)``), a limit the kernel
    reads as "unlimited", or a misleading message far from the option."""

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{'a whole number' if kind is int else 'a number'} is needed, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
        if low is not None and (value <= low if above else value < low):
            raise argparse.ArgumentTypeError(f"must be {'>' if above else '>='} {low:g}, got {text!r}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"must be <= {high:g}, got {text!r}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its own messages
    return parse


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
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
    from runtimes.naming import BadName
    from runtimes.trust import Untrusted
    from runtimes.userpaths import PathRefused

    try:
        return int(args.func(args) or 0)
    except (UserError, ScenarioError, CgroupError, BadName, PathRefused, Untrusted) as e:
        print(f"isobench: error: {e}", file=sys.stderr)
        return 2
    except BackendError as e:
        print(f"isobench: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("isobench: interrupted", file=sys.stderr)
        return 130
