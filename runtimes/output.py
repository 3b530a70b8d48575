"""A workload's stdout/stderr read by the harness, line by line: the ``log`` readiness.

``LineTee`` is the write end of a pipe that a backend hands to the workload as its stdout and
stderr, exactly where it would hand the instance's log file (it has a ``fileno()``); a thread
copies everything to the log file (when there is one) and timestamps the first line that
matches the pattern: ``t_ready`` is when the host *received* that line, as for the ready
marker.  Lines are capped at ``MAX_LINE`` bytes for matching (a longer line is matched by its
last ``MAX_LINE`` bytes); the log file gets everything.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from typing import Any

from runtimes.base import now_ns

MAX_LINE = 64 * 1024


class LineTee:
    """The pipe a workload writes its output to; see the module doc."""

    def __init__(self, pattern: str, log: Any = None):
        self.pattern = re.compile(pattern)
        self._log = log if hasattr(log, "write") else None
        self.t_match: int | None = None
        self.line: str | None = None
        self.matched = threading.Event()
        self.eof = threading.Event()
        r, w = os.pipe()
        self._w: int | None = w
        self._thread = threading.Thread(target=self._pump, args=(r,), name="isobench-output", daemon=True)
        self._thread.start()

    def fileno(self) -> int:
        if self._w is None:
            raise ValueError("the workload's output pipe is closed here")
        return self._w

    def close(self) -> None:
        """Close the harness's copy of the write end (the workload keeps its own); idempotent."""
        if self._w is not None:
            os.close(self._w)
            self._w = None

    def _pump(self, fd: int) -> None:
        partial = b""
        try:
            while chunk := os.read(fd, 65536):
                t = now_ns()
                if self._log is not None:
                    with contextlib.suppress(OSError, ValueError):
                        self._log.write(chunk)
                        self._log.flush()
                if self.t_match is not None:
                    continue
                *lines, partial = (partial + chunk).split(b"\n")
                partial = partial[-MAX_LINE:]
                for raw in lines:
                    line = raw[-MAX_LINE:].decode(errors="replace").rstrip("\r")
                    if self.pattern.search(line):
                        self.t_match, self.line = t, line
                        self.matched.set()
                        break
        except OSError:
            pass
        finally:
            os.close(fd)
            if self._log is not None:
                with contextlib.suppress(OSError, ValueError):
                    self._log.close()
            self.eof.set()
            self.matched.set()  # wake a waiter: it sees whether a line matched

    def wait(self, timeout: float) -> int | None:
        """The receive time of the first matching line; None when the output ended (or ``timeout``
        passed) without one."""
        self.matched.wait(timeout)
        return self.t_match

    def join(self, timeout: float = 1.0) -> None:
        self._thread.join(timeout)
