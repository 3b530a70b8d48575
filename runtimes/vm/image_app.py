"""An image's app in a running guest, as the host reaches it: through the guest's console.

The guest's serial console carries everything both ways.  Out of the guest: the app's output
and the marker lines (``ISOBENCH READY``/``RESULT``/``EXIT``), from which ``ImageReadiness``
takes ``t_ready``.  Into the guest: one-line requests the app starter (``native/guest_run.c``)
reads --

``ISOBENCH STOP``     send the app its stop signal, SIGKILL after its grace (``stop``);
``ISOBENCH MEMINFO``  report the guest's memory and its cgroup's counters now: ``guest_now_*``
                      RESULT lines, then ``guest_now_seq=N`` (``ask``).

``usage`` maps the guest cgroup's counters (the memory and pids limits are applied inside the
guest) onto the keys a host cgroup's ``usage()`` has, so the limit measurements read a guest's
enforcement as they read a container's.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable, MutableMapping

from runtimes.image.workload import ImageWorkload
from runtimes.vm.image_ready import ImageReadiness
from runtimes.wait import wait_until

STOP_REQUEST = "ISOBENCH STOP"
#: beyond an app's grace: the request's way in, and EXIT's way out, of an emulated guest
STOP_MARGIN_S = 5.0
MEMINFO_REQUEST = "ISOBENCH MEMINFO"
MEMINFO_TIMEOUT_S = 10.0
#: ``usage()`` asks the guest for its cgroup's counters at most this often: each answer is a dozen
#: lines through an emulated UART, work the guest does beside the app
POLL_S = 1.0
POLL_TIMEOUT_S = 2.0
#: usage key -> (the init's final report once the app ended, the app starter's live counter)
COUNTERS = {"oom_kill": ("guest_cg_mem_oom_kill", "oom_kill"), "mem_peak_bytes": ("guest_cg_mem_peak", "mem_peak"),
            "mem_current_bytes": (None, "mem_current"), "pids_current": (None, "pids_current"),
            "pids_refused": ("guest_cg_pids_max", "pids_refused")}


class ImageApp:
    """The app of one guest.  ``send`` writes to the console (raising one of ``errors`` once the
    guest is gone), ``ended`` is set when the guest ended, ``results`` are its RESULT lines."""

    def __init__(self, name: str, workload: ImageWorkload, send: Callable[[bytes], None], ended: threading.Event,
                 results: MutableMapping[str, str], errors: tuple[type[BaseException], ...]):
        self.workload = workload
        self.readiness = ImageReadiness(name, workload.ready)
        self._send, self._ended, self.results = send, ended, results
        self._errors: tuple[type[BaseException], ...] = (*errors, OSError, ValueError)
        self._asked = 0.0

    @property
    def running(self) -> bool:
        """The app has started and the guest has not ended."""
        return self.readiness.app_started and not self._ended.is_set()

    def ask(self, timeout: float = MEMINFO_TIMEOUT_S) -> bool:
        """Ask for the guest's memory now (``guest_now_*``); whether it answered in time."""
        if not self.running:
            return False
        seq = self.results.get("guest_now_seq")
        try:
            self._send(f"{MEMINFO_REQUEST}\n".encode())
        except self._errors:
            return False
        return bool(wait_until(lambda: self.results.get("guest_now_seq") != seq, timeout, interval=0.005))

    def usage(self) -> dict[str, float]:
        """The guest cgroup's counters (``COUNTERS``); the guest is asked at most every ``POLL_S``,
        the last answer kept between; once the app ended, its final report."""
        if time.monotonic() - self._asked >= POLL_S:
            self._asked = time.monotonic()
            self.ask(POLL_TIMEOUT_S)
        out = {}
        for key, (final, live) in COUNTERS.items():
            for name in (final, f"guest_now_cg_{live}", f"guest_ready_cg_{live}"):
                with contextlib.suppress(KeyError, ValueError):
                    out[key] = float(self.results[name or ""])
                    break
        return out

    def stop(self) -> None:
        """The app's stop signal through the guest, then up to its grace (and the way out) for the
        guest to report the exit; the caller ends the guest after.  Nothing before the app runs."""
        w = self.workload
        if not self.running or w.stop_signal == signal.SIGKILL:
            return
        try:
            self._send(f"{STOP_REQUEST}\n".encode())
        except self._errors:
            return  # the guest is going away anyway
        self._ended.wait(w.stop_grace_s + STOP_MARGIN_S)
