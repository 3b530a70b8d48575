"""One look for every chart: a fixed colour per backend, a line style per host, number formats.

The palette is fixed (not cycled): each backend's colour is part of its
declaration (``runtimes.declaration``), so a backend is the same colour in every
chart of every report, including reports of runs that lack some backends.
"""

from __future__ import annotations

import zlib
from typing import Any

import runtimes
from harness.stats import is_missing
from harness.stats.numbers import fmt

__all__ = ["fmt", "is_missing"]  # the one formatter and missing-value test, as the report modules ask for them

#: backends no registered declaration knows (rows of an old run) get one of these, by a stable hash
EXTRA_COLOURS = ("#56B4E9", "#F0E442", "#882255", "#44AA99", "#999933", "#332288")
#: when series are split by host/kernel, the n-th value gets the n-th line style and marker
LINESTYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v", "P")
HATCHES = ("", "//", "..", "xx", "\\\\", "oo")

#: chart sizes: 7x4 in at 110 dpi is a readable PNG on a page and in a slide
FIGSIZE = (7.0, 4.0)
DPI = 110
RC: dict[Any, Any] = {  # matplotlib types its keys as a Literal of every rc name
    "font.size": 9.5,
    "axes.titlesize": 11,
    "axes.labelsize": 9.5,
    "legend.fontsize": 8.5,
    "xtick.labelsize": 8.5,
    "ytick.labelsize": 8.5,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "svg.fonttype": "none",  # text stays text in SVGs: smaller, searchable, editable
    "svg.hashsalt": "isobench",  # stable element ids: a rebuilt report diffs only where the data changed
    "figure.dpi": DPI,
    "savefig.dpi": DPI,
}


def colour(backend: str) -> str:
    """The backend's declared colour (colour-blind-safe Okabe-Ito hues for the built-in ones)."""
    if runtimes.known(backend):
        return runtimes.declaration(backend).colour
    return EXTRA_COLOURS[zlib.crc32(backend.encode()) % len(EXTRA_COLOURS)]


def backend_rank(backend: str) -> tuple[int, str]:
    """Display order in legends, bar groups and tables: the registry's order, unknown ones last."""
    order = runtimes.names()
    return (order.index(backend) if backend in order else len(order), backend)


def fmt_param(v: Any) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)
