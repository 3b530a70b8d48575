"""The charts of a report, one function each: ``(ReportData) -> Chart | None``.

Every chart: a title, units on every axis, the backend's fixed colour
(``style.colour``, declared by each backend), a line style/marker per host when several hosts are
compared, and a footnote naming host, kernel, cgroup version and accelerator
("emulated (TCG)" where a VM ran without KVM).  A chart whose data is absent
returns None and the report says so instead.  The shared plumbing is in
``chartkit``.
"""

from __future__ import annotations

from collections.abc import Callable

from harness.report.chartkit import Chart, figure, finish, save
from harness.report.charts_enforcement import cpu_quota, cpu_ratio, mem_limit, pids_limit
from harness.report.charts_memory import density, memory_overhead
from harness.report.charts_startup import startup_latency, startup_phases
from harness.report.model import ReportData

__all__ = ["CHARTS", "Chart", "figure", "finish", "save"]

def cpu_periods(data: ReportData) -> Chart | None:
    """CPU delivered per CFS period against the quota (kept in harness.report.periods)."""
    from harness.report import periods

    return periods.cpu_periods(data)


#: section -> the charts it shows, in order
CHARTS: dict[str, tuple[Callable[[ReportData], Chart | None], ...]] = {
    "startup": (startup_latency, startup_phases),
    "memory": (memory_overhead,),
    "density": (density,),
    "cpu_quota": (cpu_quota, cpu_ratio, cpu_periods),
    "mem_limit": (mem_limit,),
    "pids_limit": (pids_limit,),
}
