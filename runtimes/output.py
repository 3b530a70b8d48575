"""A workload's stdout/stderr read line by line, as it arrives: the ``log`` readiness.

The harness already copies every workload's output from pipes it owns (``runtimes.stdio``:
one thread for all instances); for a workload that is ready by a line of its output, each of
its output streams also feeds a ``LineWatch``, chunk by chunk, as the copier receives it:
``t_ready`` is when the host *received* the first line the pattern matches, as for the ready
marker.  Lines are matched by their last ``MAX_LINE`` bytes (a line longer than that cannot
grow the harness's memory); the log gets everything, as before.
"""

from __future__ import annotations

import re
import threading

from runtimes.base import now_ns

MAX_LINE = 64 * 1024


class LineWatch:
    """The first line (of any of the streams that feed it) matching ``pattern``, with its receive time."""

    def __init__(self, pattern: str):
        self.pattern = re.compile(pattern)
        self.t_match: int | None = None
        self.line: str | None = None
        self.matched = threading.Event()
        self.eof = threading.Event()
        self._lock = threading.Lock()
        self._open = 0

    def feeder(self) -> Feeder:
        """One stream's way in (each splits its own lines); EOF when every feeder is closed."""
        with self._lock:
            self._open += 1
        return Feeder(self)

    def _line(self, raw: bytes, t: int) -> None:
        if self.t_match is not None:
            return
        line = raw[-MAX_LINE:].decode(errors="replace").rstrip("\r")
        if self.pattern.search(line):
            with self._lock:
                if self.t_match is None:
                    self.t_match, self.line = t, line
            self.matched.set()

    def _closed(self) -> None:
        with self._lock:
            self._open -= 1
            done = self._open <= 0
        if done:
            self.eof.set()
            self.matched.set()  # wake a waiter: it sees whether a line matched

    def wait(self, timeout: float) -> int | None:
        """The receive time of the first matching line; None when the output ended (or ``timeout``
        passed) without one."""
        self.matched.wait(timeout)
        return self.t_match


class Feeder:
    """One output stream's bytes, split into lines for its ``LineWatch``."""

    def __init__(self, watch: LineWatch):
        self.watch = watch
        self._partial = b""
        self._closed = False

    def feed(self, data: bytes) -> None:
        t = now_ns()
        if self.watch.t_match is not None:
            return
        *lines, self._partial = (self._partial + data).split(b"\n")
        self._partial = self._partial[-MAX_LINE:]
        for raw in lines:
            self.watch._line(raw, t)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self._partial:  # a last line without its newline still counts
                self.watch._line(self._partial, now_ns())
            self.watch._closed()
