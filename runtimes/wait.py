"""One way to wait for something: poll a predicate until it holds or the time is up.

    if not wait_until(lambda: not path.exists(), timeout=5, interval=0.01):
        raise TimeoutError(...)

The predicate is called at least once, and once more at (or just after) the
deadline, so a condition that becomes true while the last sleep runs is seen.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float, interval: float = 0.01) -> T:
    """Call ``predicate`` every ``interval`` seconds until it returns something true or
    ``timeout`` seconds have passed; returns its last value (false on a timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        left = deadline - time.monotonic()
        if left <= 0:
            return result
        time.sleep(min(interval, left))
