"""Receiving the workload's marker lines on the host, with the receive time.

A daemon thread reads a byte stream (the read end of the marker pipe, or a
guest's console) line by line.  ``t_ready`` is the host monotonic time at which
the ``ISOBENCH READY`` line was *received*: the timing contract's definition.

Lines are capped at ``MAX_LINE`` bytes: a workload that writes without newlines
must not grow the harness's memory without bound.  Past the cap the channel
records ``error``, keeps draining (so the writer never blocks) but stores
nothing more, and ``wait_ready`` fails with that error.  For the same reason a
workload may report at most ``MAX_RESULTS`` distinct ``RESULT`` keys (of at most
``MAX_LINE`` bytes each): a new key past that is dropped (counted in
``dropped_results``); the keys already there keep updating, and the channel goes on.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

from runtimes.base import BackendError, InstanceTimeout, now_ns
from runtimes.workloads import parse_marker_line

#: longest line kept (marker lines are a few dozen bytes; a console line a few hundred)
MAX_LINE = 64 * 1024
#: distinct RESULT keys kept per instance (the workloads report a handful)
MAX_RESULTS = 256


class MarkerChannel:
    """Collects markers from ``feed()`` calls or from a file descriptor it reads itself."""

    def __init__(self, log: Callable[[str], None] | None = None):
        self.t_ready: int | None = None
        self.exit_status: int | None = None
        self.results: dict[str, str] = {}
        self.ready = threading.Event()
        self.eof = threading.Event()
        self._partial = b""
        #: set when the stream broke the line cap; from then on nothing is kept
        self.error: str | None = None
        #: bytes read and thrown away after that
        self.discarded = 0
        #: RESULT lines with a new key past ``MAX_RESULTS``, thrown away
        self.dropped_results = 0
        self._log = log
        self._thread: threading.Thread | None = None

    def feed(self, data: bytes) -> None:
        """Hand over the next chunk of the stream; timestamps what completes a line."""
        t = now_ns()
        if self.error is not None:
            self.discarded += len(data)  # drained, not kept
            return
        self._partial += data
        *lines, self._partial = self._partial.split(b"\n")
        if len(self._partial) > MAX_LINE or any(len(raw) > MAX_LINE for raw in lines):
            self.discarded += len(self._partial) + sum(len(raw) for raw in lines)
            self._partial = b""
            self.error = (f"the marker channel received a line longer than {MAX_LINE} bytes (output without "
                          f"newlines?); it is drained and ignored from here on")
            self.ready.set()  # wake a waiter: it reports the error
            return
        for raw in lines:
            line = raw.decode(errors="replace")
            if self._log is not None:
                self._log(line)
            parsed = parse_marker_line(line)
            if parsed is None:
                continue
            kind, rest = parsed
            if kind == "ready" and self.t_ready is None:
                self.t_ready = t
                self.ready.set()
            elif kind == "result" and "=" in rest:
                key, _, value = rest.partition("=")
                self._result(key.strip(), value.strip())
            elif kind == "exit":
                try:
                    self.exit_status = int(rest.split()[0])
                except (ValueError, IndexError):
                    self.exit_status = -1

    def _result(self, key: str, value: str) -> None:
        if key in self.results or len(self.results) < MAX_RESULTS:
            self.results[key] = value
            return
        self.dropped_results += 1

    def close(self) -> None:
        self.eof.set()
        self.ready.set()  # wake a waiter; it sees t_ready is None

    def read_fd(self, fd: int) -> None:
        """Start a thread that reads ``fd`` until EOF, then closes it."""

        def pump() -> None:
            try:
                while chunk := os.read(fd, 4096):
                    self.feed(chunk)
            except OSError:
                pass
            finally:
                os.close(fd)
                self.close()

        self._thread = threading.Thread(target=pump, name="isobench-marker", daemon=True)
        self._thread.start()

    def wait_ready(self, timeout: float, what: str) -> int:
        if not self.ready.wait(timeout) and self.t_ready is None:
            raise InstanceTimeout(f"{what}: no ready marker within {timeout:g} s")
        if self.error is not None and self.t_ready is None:
            raise BackendError(f"{what}: {self.error}")
        if self.t_ready is None:
            raise InstanceTimeout(f"{what}: exited before writing the ready marker")
        return self.t_ready

    def join(self, timeout: float = 5.0) -> None:
        if self._thread is not None:
            self._thread.join(timeout)
