"""runtimes.wait.wait_until: plain unit tests (no root)."""

from __future__ import annotations

import itertools

from runtimes.wait import wait_until


def test_returns_the_first_true_value_without_waiting_for_the_timeout() -> None:
    calls = itertools.count(1)
    assert wait_until(lambda: next(calls) >= 3 and "done", timeout=60, interval=0.001) == "done"
    assert next(calls) == 4  # called exactly three times


def test_a_timeout_returns_the_last_false_value_after_a_final_call() -> None:
    seen: list[int] = []

    def never() -> int:
        seen.append(1)
        return 0

    assert wait_until(never, timeout=0.02, interval=0.005) == 0
    assert len(seen) >= 2  # the first call, and one more at the deadline


def test_zero_timeout_still_asks_once() -> None:
    assert wait_until(lambda: "yes", timeout=0) == "yes"
    seen: list[int] = []
    assert wait_until(lambda: seen.append(1), timeout=0) is None and seen == [1]
