"""When an image's app in a guest is ready, read off the guest's console on the host.

What ``t_ready`` is for an image guest (host ``CLOCK_MONOTONIC``, the receipt of a console
line, as the catalog's ``ISOBENCH READY``; ``docs/images.md`` says it per kind):

``tcp``/``http``  the receipt of ``ISOBENCH READY``, which the app starter in the guest writes
                  when its probe on the guest's own loopback (127.0.0.1:PORT) first succeeded
                  (a connection; a 2xx status line), on the schedule of the host's probes;
``exit``          the receipt of ``ISOBENCH EXIT 0`` (the guest's init reaped the app: its
                  ``t_exit``); any other status fails the launch;
``log``           the receipt of the first line of the app's output (copied to the console by
                  the starter) that the regular expression matches -- matched here, with
                  Python's ``re`` as for the process backends, so a pattern means the same
                  everywhere.  Only lines after the guest's ``guest_uptime_workload`` report
                  are the app's (the kernel's and init's come before).

An app that ends before it is ready fails the launch with its exit status.
"""

from __future__ import annotations

import re
import threading

from runtimes.base import BackendError, InstanceTimeout
from runtimes.workloads import Ready, parse_marker_line

#: the RESULT key the guest's init writes just before it starts the app (``INIT_START``)
APP_STARTS = "guest_uptime_workload"


class ImageReadiness:
    """Fed every console line with its receipt time; ``wait`` returns ``t_ready``."""

    def __init__(self, name: str, ready: Ready):
        self.name = name
        self.ready = ready
        self.pattern = re.compile(ready.pattern) if ready.kind == "log" and ready.pattern else None
        self.app_started = False
        self.t_ready: int | None = None
        self.status: int | None = None
        self.ended = False
        self._event = threading.Event()

    def line(self, line: str, t: int) -> None:
        line = line.rstrip("\r")
        parsed = parse_marker_line(line)
        if parsed is None:
            if self.pattern is not None and self.app_started and self.t_ready is None and self.pattern.search(line):
                self._ready(t)
            return
        kind, rest = parsed
        if kind == "result" and rest.partition("=")[0].strip() == APP_STARTS:
            self.app_started = True
        elif kind == "ready" and self.ready.kind in ("tcp", "http") and self.t_ready is None:
            self._ready(t)
        elif kind == "exit" and self.status is None:
            try:
                self.status = int(rest.split()[0])
            except (ValueError, IndexError):
                self.status = -1
            if self.ready.kind == "exit" and self.status == 0 and self.t_ready is None:
                self._ready(t)
            self._event.set()

    def end(self) -> None:
        """The console ended (the guest is gone)."""
        self.ended = True
        self._event.set()

    def _ready(self, t: int) -> None:
        self.t_ready = t
        self._event.set()

    def wait(self, timeout: float) -> int:
        self._event.wait(timeout)
        if self.t_ready is not None:
            return self.t_ready
        what = self.ready.describe()
        if self.status is not None:
            wants = " (ready = exit wants 0)" if self.ready.kind == "exit" else f" before it was ready ({what})"
            raise BackendError(f"{self.name}: the app exited with status {self.status}{wants}")
        if self.ended:
            raise InstanceTimeout(f"{self.name}: the guest ended before the app was ready ({what})")
        raise InstanceTimeout(f"{self.name}: {what} not ready within {timeout:g} s")
