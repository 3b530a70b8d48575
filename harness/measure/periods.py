"""CPU counters read once per CFS period, just before each period boundary.

CFS bandwidth control refills a cgroup's quota from an hrtimer that fires every
``period``; ``nr_periods`` in cpu.stat counts those firings.  The timer keeps a
fixed phase while the cgroup stays busy, so after locating one firing (the read
in which ``nr_periods`` moved), every later boundary is ``phase + k * period``.

Reads are then taken a little *before* each boundary.  Two consecutive such
reads bracket exactly one period of the kernel's accounting: in a throttled
period the usage is flat at that point (the quota ran out earlier), and in an
unthrottled one the same slice of work is cut off at both ends, so the
difference is that period's delivery.  Whether a read really landed before its
boundary is checked with ``nr_periods`` itself, not assumed: a read that saw
the wrong number of periods is dropped with the periods around it.

Pure functions (``per_period``, ``window``) are separate from the
sampler so they can be tested with synthetic reads.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from runtimes.base import now_ns

#: never read more often than this (a read of every counter costs ~0.3 ms on cgroup v1)
MIN_READ_GAP_NS = 2_000_000
#: sleep until this long before a target, then spin: time.sleep alone wakes up to ~0.1 ms late
SPIN_NS = 300_000


@dataclass(frozen=True)
class Read:
    """One reading of the CPU counters; ``t_ns`` is the middle of the read."""

    t_ns: int
    span_ns: int  # how long the read took
    usage_ns: float
    periods: int | None
    throttled: int | None
    throttled_ns: float | None
    target_ns: int = 0  # when it was meant to happen (0: not phase-locked)
    k: int = 0  # the index of the period boundary it was meant to precede

    @classmethod
    def of(cls, t0: int, t1: int, u: Mapping[str, float], target_ns: int = 0, k: int = 0) -> Read | None:
        if "cpu_usage_ns" not in u:
            return None
        opt = {k: u.get(k) for k in ("cpu_nr_periods", "cpu_nr_throttled", "cpu_throttled_ns")}
        return cls((t0 + t1) // 2, t1 - t0, float(u["cpu_usage_ns"]),
                   None if opt["cpu_nr_periods"] is None else int(opt["cpu_nr_periods"]),
                   None if opt["cpu_nr_throttled"] is None else int(opt["cpu_nr_throttled"]),
                   opt["cpu_throttled_ns"], target_ns, k)


@dataclass
class Series:
    """What the sampler saw over one window."""

    period_ns: int
    stride: int  # periods between two phase-locked reads (> 1 when the period is shorter than a read)
    reads: list[Read] = field(default_factory=list)
    locked: bool = False  # False: reads at a fixed interval, not aligned to period boundaries
    why_unlocked: str = ""
    lead_ns: int = 0  # how long before its boundary a locked read is aimed
    phase_err_ns: int = 0  # half the width of the interval the boundary was located in
    realtime: bool = False  # the reads were made by a SCHED_FIFO thread


# -- pure analysis ------------------------------------------------------------------------
def on_time(series: Series) -> list[Read]:
    """The locked reads that certainly happened before their boundary: each ended more than
    the phase's uncertainty before the boundary it was aimed at (a late wake-up is dropped)."""
    if not series.locked:
        return []
    return [r for r in series.reads if r.periods is not None and r.target_ns
            and r.t_ns + r.span_ns // 2 < r.target_ns + series.lead_ns - series.phase_err_ns]


def per_period(series: Series, quota_ns: float) -> list[float]:
    """Delivered ÷ quota for each period (or each ``stride`` periods) between two on-time reads."""
    return [r for _, r in indexed_periods(series, quota_ns)]


def indexed_periods(series: Series, quota_ns: float) -> list[tuple[int, float]]:
    """(period index from the first read, delivered ÷ quota) for every period bracketed by two
    consecutive on-time reads that the kernel's ``nr_periods`` confirms are ``stride`` periods
    apart (if the timer went idle, it counted fewer: that stretch is not one period)."""
    if quota_ns <= 0:
        return []
    good = on_time(series)
    if not good:
        return []
    k0 = good[0].k
    return [(b.k - k0, (b.usage_ns - a.usage_ns) / (series.stride * quota_ns))
            for a, b in zip(good, good[1:], strict=False)
            if b.k - a.k == series.stride and (b.periods or 0) - (a.periods or 0) == series.stride]


@dataclass(frozen=True)
class Window:
    first: Read
    last: Read
    seconds: float  # the window's length: whole periods when aligned, else the clock
    aligned: bool
    note: str = ""

    @property
    def delivered(self) -> float:
        """CPUs delivered over the window."""
        return (self.last.usage_ns - self.first.usage_ns) / (self.seconds * 1e9)

    def delta(self, attr: str) -> float | None:
        a, b = getattr(self.first, attr), getattr(self.last, attr)
        return None if a is None or b is None else float(b - a)


def window(series: Series) -> Window:
    """The longest stretch between two on-time locked reads (a whole number of periods, counted
    by the kernel), or, unlocked, between the first and last read timed by the clock."""
    good = on_time(series) if series.locked else list(series.reads)
    if series.locked and len(good) < 2 and len(series.reads) >= 2:
        # every locked read woke too late to be sure of its boundary (an emulated guest or an
        # overloaded host): the clock window over all reads still measures delivered CPU
        first, last = series.reads[0], series.reads[-1]
        return Window(first, last, (last.t_ns - first.t_ns) / 1e9, False,
                      "reads missed their period boundaries (late wake-ups): clock used, no per-period figures")
    if len(good) < 2:
        raise ValueError(f"only {len(good)} usable reading(s) in the window")
    first, last = good[0], good[-1]
    wall = (last.t_ns - first.t_ns) / 1e9
    if series.locked and first.periods is not None and last.periods is not None:
        n, steps = last.periods - first.periods, last.k - first.k
        # the kernel counted every period between the two reads (its timer never went idle):
        # the window is exactly that many periods; otherwise the clock is the honest length
        if n > 0 and n == steps:
            return Window(first, last, n * series.period_ns / 1e9, True)
        return Window(first, last, wall, False,
                      f"period counter ({n} periods) disagrees with the clock ({steps} periods): clock used")
    return Window(first, last, wall, False, series.why_unlocked)


def jitter_us(series: Series) -> list[float]:
    """How far each locked read's middle fell from its target, in µs."""
    return [abs(r.t_ns - r.target_ns) / 1e3 for r in series.reads if r.target_ns]


# -- the sampler ------------------------------------------------------------------------------
Reader = Callable[[], Mapping[str, float]]


def _sleep_until(t_ns: int) -> None:
    pause = t_ns - now_ns() - SPIN_NS
    if pause > 0:
        time.sleep(pause / 1e9)
    while now_ns() < t_ns:
        pass


def _read(reader: Reader, target_ns: int = 0, k: int = 0) -> Read | None:
    t0 = now_ns()
    u = reader()
    return Read.of(t0, now_ns(), u, target_ns, k)


def _find_boundary(reader: Reader, step_ns: int, until_ns: int) -> tuple[int, int] | None:
    """Read every ``step_ns`` until ``nr_periods`` moves; the boundary's (earliest, latest) time."""
    prev = _read(reader)
    if prev is None or prev.periods is None:
        return None
    while now_ns() < until_ns:
        if step_ns:
            _sleep_until(now_ns() + step_ns)
        cur = _read(reader)
        if cur is None or cur.periods is None:
            return None
        if cur.periods != prev.periods:
            return prev.t_ns - prev.span_ns // 2, cur.t_ns + cur.span_ns // 2
        prev = cur
    return None


def lock_phase(reader: Reader, period_ns: int, until_ns: int) -> tuple[int, int] | None:
    """(a time at which the period timer fired, ± this much); None if it never fired.

    Coarse first (a read every 1/16 period), then back-to-back reads around the predicted
    next firing, so even a 1 s period costs two short bursts of reads, not a second of them."""
    coarse = _find_boundary(reader, max(period_ns // 16, 0), min(until_ns, now_ns() + 3 * period_ns))
    if coarse is None:
        return None
    lo, hi = coarse
    if hi - lo < 1_000_000:  # already within a millisecond
        return (lo + hi) // 2, (hi - lo) // 2
    _sleep_until(lo + period_ns - 500_000)
    fine = _find_boundary(reader, 50_000, min(until_ns, hi + period_ns + period_ns // 4))
    return None if fine is None else ((fine[0] + fine[1]) // 2, (fine[1] - fine[0]) // 2)


@contextlib.contextmanager
def realtime() -> Iterator[bool]:
    """Run the calling thread SCHED_FIFO while inside (True), if the host lets us.

    The reads must land within a fraction of a period of their target even on a host
    whose CPUs are all busy (the workload itself may fill them); a real-time sampler that
    sleeps between reads takes ~3 % of one CPU at a 10 ms period.  Restored on the way out."""
    try:
        before = os.sched_getscheduler(0), os.sched_getparam(0)
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
    except (OSError, AttributeError):
        yield False
        return
    try:
        yield True
    finally:
        with contextlib.suppress(OSError):
            os.sched_setscheduler(0, before[0], before[1])


def sample(reader: Reader, period_ns: int | None, start_ns: int, end_ns: int,
           stop: Callable[[], bool] = lambda: False) -> Series:
    """Read the CPU counters from ``start_ns`` to ``end_ns``: phase-locked just before period
    boundaries when the cgroup has a period timer, else every ``5 * MIN_READ_GAP_NS``."""
    with realtime() as rt:
        series = _sample(reader, period_ns, start_ns, end_ns, stop)
    series.realtime = rt
    return series


def _sample(reader: Reader, period_ns: int | None, start_ns: int, end_ns: int,
            stop: Callable[[], bool]) -> Series:
    _sleep_until(start_ns)
    series = Series(period_ns or 0, 1)
    locked = lock_phase(reader, period_ns, end_ns) if period_ns else None
    if period_ns and locked is not None and 4 * locked[1] > period_ns:
        series.why_unlocked = f"period boundary located only to ±{locked[1] / 1e6:.2f} ms: not aligned"
        locked = None
    elif locked is None:
        series.why_unlocked = ("no CFS period counter (nr_periods) to align to" if period_ns
                               else "no quota: no periods")
    if locked is None:
        step = 5 * MIN_READ_GAP_NS
        t = now_ns()
        while t <= end_ns and not stop():
            r = _read(reader)
            if r is not None:
                series.reads.append(r)
            t += step
            _sleep_until(t)
        return series
    assert period_ns is not None
    phase, series.phase_err_ns = locked
    series.locked = True
    series.stride = max(1, math.ceil(MIN_READ_GAP_NS / period_ns))
    # aimed this far before the boundary: clear of it by the phase's uncertainty and a read
    series.lead_ns = lead = max(min(period_ns // 10, 2_000_000), 250_000 + series.phase_err_ns)
    k = math.ceil((now_ns() + lead + SPIN_NS - phase) / period_ns) + 1
    while not stop():
        target = phase + k * period_ns - lead
        if target > end_ns:
            break
        _sleep_until(target - 100_000)  # the read's middle lands near the target (a read takes ~0.2 ms)
        r = _read(reader, target, k)
        if r is not None:
            series.reads.append(r)
        k += series.stride
    return series
