"""The density finding: each backend's host memory per additional idle instance, with its interval
(the pooled Theil–Sen slope), or "not resolved" (a negative figure too); both methods (MemAvailable,
the cgroup's charge) when stored; for an image workload, its page cache (``harness.measure.sharing``)."""

from __future__ import annotations

from typing import Any

from harness.report.findings import Finding, rank
from harness.report.model import ReportData
from harness.stats.numbers import quantity


def density(data: ReportData, measurement: str) -> Finding | None:
    """The pooled slope per backend (and workload) with its interval, or "not resolved"; both methods
    when stored; for an image workload, its page cache (``harness.measure.sharing``)."""
    s = data.summary
    if s.empty:
        return None
    d = s[(s["measurement"] == measurement) & (s["n"] > 0)]
    slopes = d[d["metric"] == "density_slope"]
    if slopes.empty:
        return None
    several = slopes["workload"].nunique() > 1

    def value(r: Any, metric: str) -> float | None:
        m = d[(d["series"] == r["series"]) & (d["workload"] == r["workload"]) & (d["metric"] == metric)]
        return float(m["median"].iloc[0]) if not m.empty else None

    def figure(r: Any, slope: str, lo: str, hi: str) -> str | None:
        v, a, b = value(r, slope), value(r, lo), value(r, hi)
        if v is not None and v < 0:  # an instance costs no less than nothing: memory left what was measured
            bounds = f" [{a:.3g}, {b:.3g}]" if a is not None and b is not None else ""
            return f"not resolved: negative ({v:.3g}{bounds}: memory left what was measured faster)"
        if v is None or a is None or b is None:
            return None
        if b - a > abs(v):  # wider than the figure itself: no number
            return f"not resolved ([{a:.2g}, {b:.2g}])"
        return f"{quantity(v, 'MiB')} [{a:.2g}–{b:.2g}]"

    def growth(r: Any, name: str) -> str:
        """A page-cache growth per instance: its figure, or the bound its interval sets when that holds 0."""
        v, a, b = (value(r, f"{name}_pooled{x}") for x in ("", "_lo", "_hi"))
        if v is None:
            return "n/a"
        if a is None or b is None:
            return (f"not resolved: negative ({v:.3g}, no interval)" if v < 0 else
                    f"{quantity(v, 'MiB')} (no interval: too few ramps)")
        if a <= 0 <= b:
            return f"none resolved (at most {b:.2g} MiB, 95 %)"
        return figure(r, f"{name}_pooled", f"{name}_pooled_lo", f"{name}_pooled_hi") or "n/a"

    parts, lines = [], []
    for _, r in rank(slopes).iterrows():
        who = f"{r['series']} ({r['workload']})" if several else str(r["series"])
        host = figure(r, "density_pooled_slope", "density_pooled_lo", "density_pooled_hi")
        cg = figure(r, "density_charged_pooled", "density_charged_pooled_lo", "density_charged_pooled_hi")
        if host is None:  # an older run (one least-squares fit per repetition), or too few ramps: no interval
            parts.append(f"{who} {quantity(r['median'], 'MiB')} (no interval)")
        else:
            parts.append(f"{who} {host} by MemAvailable" + (f", {cg} by its cgroup's charge" if cg else ""))
        held = value(r, "image_resident_held")  # an image workload: its page cache
        if held is not None:
            rest = value(r, "file_charge_rest")
            lines.append(f"{who}: the image's pages in the page cache {quantity(held, 'MiB')} with every instance "
                         f"held (mincore of its layers); per added instance {growth(r, 'image_resident')} by "
                         f"mincore, {growth(r, 'cached')} by Cached" + (
                             f"; each later instance's cgroup charged {quantity(rest, 'MiB')} of page cache"
                             if rest is not None else "") + ".")
    return Finding("Density: host memory per additional idle instance (Theil–Sen slope, all ramps pooled)",
                   ["; ".join(parts) + ".", *lines])
