"""How a number is written for a reader: one formatter, in the four styles the harness uses.

- ``TABLE`` (report tables): 3 significant digits, 4 between 1 and 1000 (``29.74``,
  ``205.8``), integers as integers (``1,024``), no exponent below 1e6;
- ``PROSE`` (findings, warnings, notes): 3 significant digits, thousands separated, trailing
  zeros kept (``29.7``, ``0.0140``, ``3,810``);
- ``COMPACT`` (the terminal summary): 3 significant digits, an exponent for large numbers
  (``8.02e+03``);
- ``EXACT`` (bounds written back to a baseline file): as few digits as say the value (``16``,
  ``0.5``).

Missing values (None, nan) are ``""`` in a table and ``"?"`` in prose.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from harness.stats import is_missing

if TYPE_CHECKING:  # pragma: no cover
    from harness.stats.estimate import Estimate

TABLE, PROSE, COMPACT, EXACT = "table", "prose", "compact", "exact"


def fmt(v: Any, how: str = TABLE) -> str:
    """``v`` written in the style ``how`` (see the module doc); text passes through a table."""
    if how == EXACT:
        v = float(v)
        return str(int(v)) if v.is_integer() else f"{v:g}"
    if how == COMPACT:
        return f"{float(v):.3g}"
    if how == PROSE:
        return _prose(v)
    if how != TABLE:
        raise ValueError(f"unknown number style {how!r}")
    if is_missing(v):
        return ""
    if isinstance(v, str):
        return v
    return _table(float(v))


def _table(v: float) -> str:
    if v.is_integer() and abs(v) < 1e6:
        return f"{int(v):,}"  # counts and booleans read as integers
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    if a >= 0.001:
        return f"{v:.3g}"
    return f"{v:.2e}"


def _prose(v: Any) -> str:
    if is_missing(v) or not math.isfinite(v):
        return "?"
    v = float(f"{v:.3g}")  # round first: 0.9996 is 1.00, not 1.000
    if v == 0:
        return "0"
    digits = max(0, 2 - int(math.floor(math.log10(abs(v)))))
    return f"{round(v, digits):,.{digits}f}"


def quantity(v: float, unit: str) -> str:
    """A value with its unit in prose, milliseconds above 1000 as seconds."""
    if unit == "ms" and abs(v) >= 1000:
        return f"{fmt(v / 1000, PROSE)} s"
    if unit in ("ratio", "bool", "count", ""):
        return fmt(v, PROSE)
    return f"{fmt(v, PROSE)} {unit}"


def stated(e: Estimate, unit: str) -> str:
    """``29.7 ms [28.0–31.6] (n=30)``; unresolved: ``8.02 s (n=3)``."""
    scale = 1000.0 if unit == "ms" and abs(e.value) >= 1000 else 1.0
    if e.resolved:
        return f"{quantity(e.value, unit)} [{fmt(e.lo / scale, PROSE)}–{fmt(e.hi / scale, PROSE)}] (n={e.n})"
    return f"{quantity(e.value, unit)} (n={e.n})"


def times(e: Estimate, ref: str) -> str:
    """``14.1× bare [13.2–15.1]``; unresolved: ``≈3,810× bare``."""
    if e.resolved:
        return f"{fmt(e.value, PROSE)}× {ref} [{fmt(e.lo, PROSE)}–{fmt(e.hi, PROSE)}]"
    return f"≈{fmt(e.value, PROSE)}× {ref}"
