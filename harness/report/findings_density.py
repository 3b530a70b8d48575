"""The density finding: each backend's host memory per additional idle instance, with its interval
(the pooled Theil–Sen slope), or "not resolved"; both methods (MemAvailable, the cgroup's charge)
when stored."""

from __future__ import annotations

from harness.report.findings import Finding, rank
from harness.report.model import ReportData
from harness.stats.numbers import quantity


def density(data: ReportData, measurement: str) -> Finding | None:
    """The pooled slope per backend with its interval, or "not resolved"; both methods when stored."""
    s = data.summary
    if s.empty:
        return None
    d = s[(s["measurement"] == measurement) & (s["n"] > 0)]
    slopes = d[d["metric"] == "density_slope"]
    if slopes.empty:
        return None

    def value(series: str, metric: str) -> float | None:
        m = d[(d["series"] == series) & (d["metric"] == metric)]
        return float(m["median"].iloc[0]) if not m.empty else None

    def figure(series: str, slope: str, lo: str, hi: str) -> str | None:
        v, a, b = value(series, slope), value(series, lo), value(series, hi)
        if v is None or a is None or b is None:
            return None
        if b - a > abs(v):  # wider than the figure itself: no number
            return f"not resolved ([{a:.2g}, {b:.2g}])"
        return f"{quantity(v, 'MiB')} [{a:.2g}–{b:.2g}]"

    parts = []
    for _, r in rank(slopes).iterrows():
        host = figure(r["series"], "density_pooled_slope", "density_pooled_lo", "density_pooled_hi")
        cg = figure(r["series"], "density_charged_pooled", "density_charged_pooled_lo", "density_charged_pooled_hi")
        if host is None:  # an older run: one least-squares fit per repetition, no interval
            parts.append(f"{r['series']} {quantity(r['median'], 'MiB')} (no interval)")
        else:
            parts.append(f"{r['series']} {host} by MemAvailable" + (f", {cg} by its cgroup's charge" if cg else ""))
    return Finding("Density: host memory per additional idle instance (Theil–Sen slope, all ramps pooled)",
                   ["; ".join(parts) + "."])

