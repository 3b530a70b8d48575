"""Progress of a run: a tqdm bar on a terminal, plain lines where there is none.

Under CI or ``nox`` the output is a pipe or a file: a bar there is either
nothing (tqdm disabled) or a wall of carriage returns.  Instead one line at
most every ``INTERVAL`` seconds, plus one at the end::

    isobench: progress 120/480 (25 %) · startup/noop on container · elapsed 1m40s · ETA 5m00s

Both kinds answer the same four calls the runner makes (``set_postfix_str``,
``update``, ``close`` and ``n``), so the runner does not care which it got.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO

#: seconds between two progress lines when the output is not a terminal
INTERVAL = 10.0


def duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``1h02m``: short enough for a log line, exact enough for an ETA."""
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class Lines:
    """A progress reporter that prints a line at most every ``interval`` seconds.

    The ETA: each remaining step is expected to take as long as the done steps
    of the same kind took on average (``kinds[i]`` names step i's kind, e.g.
    its backend: a guest boot takes seconds, a process launch milliseconds),
    or as long as the average done step when no step of its kind is done yet.
    """

    def __init__(self, total: int, stream: TextIO | None = None, interval: float = INTERVAL,
                 clock: Callable[[], float] = time.monotonic, label: str = "isobench: progress",
                 kinds: Sequence[str] | None = None):
        self.total, self.n = total, 0
        self.kinds = list(kinds) if kinds is not None and len(kinds) == total else None
        self.spent: dict[str, list[float]] = {}  # kind -> [seconds, steps]
        self.stream = stream if stream is not None else sys.stderr
        self.interval, self.clock, self.label = interval, clock, label
        self.start = clock()
        self.mark = self.start  # when the last step ended
        self.last: float | None = None  # when the last line was printed
        self.step = ""
        self.closed = False

    def set_postfix_str(self, text: str) -> None:
        self.step = text

    def update(self, k: int = 1) -> None:
        now = self.clock()
        if self.kinds is not None and k > 0:
            took = (now - self.mark) / k
            for i in range(self.n, min(self.n + k, self.total)):
                acc = self.spent.setdefault(self.kinds[i], [0.0, 0])
                acc[0] += took
                acc[1] += 1
        self.mark = now
        self.n += k
        if self.last is None or now - self.last >= self.interval:
            self._print(now)

    def eta(self, elapsed: float) -> float:
        if self.kinds is None or not self.spent:
            return elapsed / self.n * (self.total - self.n)
        mean = elapsed / self.n
        per = {kind: s / c for kind, (s, c) in self.spent.items()}
        return sum(per.get(kind, mean) for kind in self.kinds[self.n:])

    def line(self, now: float) -> str:
        elapsed = now - self.start
        pct = f" ({100 * self.n / self.total:.0f} %)" if self.total else ""
        parts = [f"{self.label} {self.n}/{self.total}{pct}"]
        if self.step:
            parts.append(self.step)
        parts.append(f"elapsed {duration(elapsed)}")
        if 0 < self.n < self.total:
            parts.append(f"ETA {duration(self.eta(elapsed))}")
        elif self.n >= self.total:
            parts.append("done")
        return " · ".join(parts)

    def _print(self, now: float) -> None:
        self.last = now
        print(self.line(now), file=self.stream, flush=True)

    def close(self) -> None:
        """The final line (always, so a log says where a run stopped)."""
        if not self.closed:
            self.closed = True
            self._print(self.clock())


class Silent:
    """``--no-progress``: the same calls, no output."""

    def __init__(self, total: int):
        self.total, self.n = total, 0

    def set_postfix_str(self, text: str) -> None:
        pass

    def update(self, k: int = 1) -> None:
        self.n += k

    def close(self) -> None:
        pass


def reporter(total: int, enabled: bool | None = None, stream: TextIO | None = None,
             kinds: Sequence[str] | None = None) -> Any:
    """A tqdm bar when ``stream`` (stderr) is a terminal, progress lines when it is not,
    nothing when ``enabled`` is False.  ``enabled=True`` forces the bar.  ``kinds`` (one per
    step) make the lines' ETA count each kind of step at its own pace."""
    stream = stream if stream is not None else sys.stderr
    if enabled is False:
        return Silent(total)
    if enabled or stream.isatty():
        from tqdm import tqdm  # type: ignore[import-untyped,unused-ignore]

        return tqdm(total=total, unit="sample", dynamic_ncols=True, file=stream,
                    bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}] {postfix}")
    return Lines(total, stream, kinds=kinds)
