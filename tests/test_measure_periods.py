"""The per-period analysis of CPU counters: which reads count, what each period delivered."""

from __future__ import annotations

import pytest

from harness.measure.periods import Read, Series, on_time, per_period, window
from harness.stats.quantile import quantile

MS = 1_000_000
P = 10 * MS  # period
QUOTA = 5 * MS  # 0.5 CPU at 10 ms


def locked(deliveries: list[float], *, late: set[int] = frozenset(), shift_from: int | None = None) -> Series:
    """Reads aimed 1 ms before boundaries k = 1..n of a 10 ms timer with phase 0; read k sees
    the usage delivered so far.  ``late``: reads that landed after their boundary (they saw
    one more period); ``shift_from``: from this read on the timer lost a period (phase moved)."""
    s = Series(P, 1, locked=True, lead_ns=MS, phase_err_ns=200_000)
    usage = 0.0
    for k, d in enumerate([0.0, *deliveries], start=1):
        usage += d
        target = k * P - MS
        t = target + (2 * MS if k in late else 0)
        periods = 100 + k + (1 if k in late else 0) + (-1 if shift_from is not None and k >= shift_from else 0)
        s.reads.append(Read(t, 200_000, usage, periods, 0, 0.0, target, k))
    return s


def test_each_period_is_the_usage_between_two_reads() -> None:
    s = locked([QUOTA, QUOTA * 0.5, QUOTA * 1.2])
    assert per_period(s, QUOTA) == pytest.approx([1.0, 0.5, 1.2])


def test_a_late_read_is_dropped_with_the_periods_around_it() -> None:
    s = locked([QUOTA] * 5, late={3})
    good = on_time(s)
    assert [r.k for r in good] == [1, 2, 4, 5, 6]
    # k 2 -> 4 spans two periods: not one period's delivery
    assert per_period(s, QUOTA) == pytest.approx([1.0, 1.0, 1.0])


def test_periods_the_kernel_did_not_count_are_not_periods() -> None:
    # from read 8 on, the timer had gone idle for a period: nr_periods is one short
    s = locked([QUOTA] * 8, shift_from=8)
    assert [r.k for r in on_time(s)] == list(range(1, 10))
    assert len(per_period(s, QUOTA)) == 7  # the stretch 7 -> 8 is not one period
    w = window(s)
    assert not w.aligned and "disagrees" in w.note


def test_window_counts_whole_periods_when_the_clock_agrees() -> None:
    w = window(locked([QUOTA] * 10))
    assert w.aligned and w.seconds == pytest.approx(0.1)
    assert w.delivered == pytest.approx(0.5)


def test_window_falls_back_to_the_clock_when_the_counter_disagrees() -> None:
    s = locked([QUOTA] * 10)
    last = s.reads[-1]
    # the timer went idle for three periods: nr_periods stops counting, the clock does not
    s.reads[-1] = Read(last.t_ns + 3 * P, last.span_ns, last.usage_ns, last.periods, 0, 0.0,
                       last.target_ns + 3 * P, last.k + 3)
    w = window(s)
    assert w.seconds == pytest.approx(0.13) and not w.aligned and "disagrees" in w.note


def test_unlocked_reads_are_timed_by_the_clock_and_give_no_periods() -> None:
    s = Series(P, 1, locked=False, why_unlocked="no CFS period counter")
    s.reads = [Read(0, 1000, 0.0, None, None, None), Read(2 * 10**9, 1000, 1e9, None, None, None)]
    w = window(s)
    assert not w.aligned and w.delivered == pytest.approx(0.5) and "no CFS" in w.note
    assert per_period(s, QUOTA) == []


def test_window_falls_back_to_the_clock_when_every_read_was_late() -> None:
    # an emulated guest: no read landed before its boundary, but usage over the clock is still known
    s = locked([QUOTA] * 10, late=set(range(1, 12)))
    assert on_time(s) == [] and per_period(s, QUOTA) == []
    w = window(s)
    assert not w.aligned and "late" in w.note and w.delivered == pytest.approx(0.5)


def test_window_needs_two_reads() -> None:
    with pytest.raises(ValueError, match="usable"):
        window(Series(P, 1, locked=True))


def test_quantile_interpolates() -> None:
    assert quantile([1, 2, 3, 4], 0.5) == 2.5
    assert quantile([5], 0.99) == 5
    assert quantile(list(range(101)), 0.01) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        quantile([], 0.5)
