"""Numeric command-line options, checked where argparse reads them: finite and in range.

``float("nan")``, ``float("inf")`` and ``-1`` all parse as numbers; each would become a
traceback (``round(nan)``), a limit the kernel reads as "unlimited", or a misleading
message far from the option.  ``number(...)`` is an argparse ``type=`` that refuses them
with one line naming the option (``isobench exec: error: argument --cpus: …``, exit 2).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def number(kind: type[int] | type[float], low: float | None = None, high: float | None = None, *,
           above: bool = False) -> Callable[[str], float]:
    """An argparse type: a finite ``kind`` within [``low``, ``high``] (``above``: strictly
    greater than ``low``)."""

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
