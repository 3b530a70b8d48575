"""Waiting for an image workload to be ready, from the host: its exit, a log line, TCP, HTTP.

What ``t_ready`` is (host ``CLOCK_MONOTONIC``, as everywhere; ``docs/images.md`` says it
per kind):

``exit``  the moment the harness knew the workload had exited with status 0 (its ``t_exit``);
``log``   the receipt of the first output line the pattern matches (``runtimes.output``);
``tcp``   the return of the first ``connect()`` to ``127.0.0.1:PORT`` that succeeded;
``http``  the receipt of the status line of the first 2xx answer to ``GET /PATH`` on
          ``127.0.0.1:PORT``.

``tcp`` and ``http`` are probed **inside the instance's own network namespace**: a probe
thread ``setns``-es into it (a network namespace is per thread) and never returns to any
pool; the host's addresses are never used.  An instance without a namespace of its own
(``bare``) is probed on the host's loopback, and a successful connection counts only when
the listening socket belongs to one of the instance's processes (another program holding the
port is an error, not readiness).  A probe tries every ``INTERVAL_S`` for the first
``FAST_S`` seconds, then every ``SLOW_INTERVAL_S``: t_ready lies at most one interval after
the moment the app began to answer.  A workload that exits before it is ready fails
the launch with its status.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from runtimes import syscalls as sc
from runtimes.base import BackendError, InstanceTimeout, now_ns
from runtimes.output import LineWatch
from runtimes.workloads import Ready

INTERVAL_S = 0.001
FAST_S = 2.0
SLOW_INTERVAL_S = 0.01
#: one attempt may take this long (an app that accepted but has not answered yet)
ATTEMPT_TIMEOUT_S = 1.0
#: the address probed, in the instance's namespace (or the host's loopback for bare)
ADDRESS = "127.0.0.1"


@dataclass
class Target:
    """What a probe needs of an instance (``ProcessInstance.probe_target`` fills it)."""

    name: str
    #: the workload's exit status once it (or the runtime holding it) has exited, else None
    exited: Callable[[], int | None]
    #: the instance's processes (bare: whose is the listening socket)
    pids: Callable[[], list[int]]
    #: True: probe in the instance's own network namespace (found among ``pids``)
    own_netns: bool = True
    #: bring ``lo`` up on entering it (unshare(1) leaves it down; runtimes bring it up themselves)
    lo_up: bool = False
    #: the workload's output, for ``log``
    lines: LineWatch | None = None
    #: blocks until the exit; returns (status, t_exit), for ``exit``
    wait_exit: Callable[[float], tuple[int, int | None]] | None = None


def prepare(ready: Ready) -> None:
    """What a probe of ``ready`` needs that is slow the first time (encoding the netlink request
    that brings ``lo`` up imports pyroute2): called before ``t_launch``."""
    if ready.kind in ("tcp", "http"):
        from runtimes.container import namespaces

        namespaces.loopback_up_request()


def wait(ready: Ready, target: Target, timeout: float) -> int:
    """Block until ``target`` is ready as ``ready`` says; return ``t_ready``."""
    if ready.kind == "exit":
        return _wait_exit(target, timeout)
    if ready.kind == "log":
        return _wait_log(ready, target, timeout)
    if ready.kind in ("tcp", "http"):
        return _wait_net(ready, target, timeout)
    raise BackendError(f"{target.name}: readiness {ready.describe()} is not probed from the host")


def _wait_exit(target: Target, timeout: float) -> int:
    assert target.wait_exit is not None
    status, t_exit = target.wait_exit(timeout)
    if status != 0:
        raise BackendError(f"{target.name}: exited with status {status} (ready = exit wants 0)")
    return t_exit if t_exit is not None else now_ns()


def _wait_log(ready: Ready, target: Target, timeout: float) -> int:
    if target.lines is None:
        raise BackendError(f"{target.name}: its output is not captured: cannot wait for {ready.describe()}")
    t = target.lines.wait(timeout)
    if t is not None:
        return t
    if target.lines.eof.is_set():
        status = target.exited()
        raise InstanceTimeout(f"{target.name}: its output ended without a line matching /{ready.pattern}/"
                              + (f" (exit status {status})" if status is not None else ""))
    raise InstanceTimeout(f"{target.name}: no output line matched /{ready.pattern}/ within {timeout:g} s")


def _wait_net(ready: Ready, target: Target, timeout: float) -> int:
    probe = _NetProbe(ready, target, time.monotonic() + timeout)
    probe.start()
    probe.join(timeout + ATTEMPT_TIMEOUT_S + 1.0)
    if probe.is_alive():  # stuck in one attempt past its own timeout: leave it, it ends by itself
        probe.stop.set()
        raise InstanceTimeout(f"{target.name}: {ready.describe()} not ready within {timeout:g} s")
    if probe.error is not None:
        raise probe.error
    assert probe.t_ready is not None
    return probe.t_ready


class _NetProbe(threading.Thread):
    """A thread of its own: it enters the instance's network namespace and stays there."""

    def __init__(self, ready: Ready, target: Target, deadline: float):
        super().__init__(name=f"isobench-probe-{target.name}", daemon=True)
        self.ready, self.target, self.deadline = ready, target, deadline
        self.stop = threading.Event()
        self.t_ready: int | None = None
        self.error: BaseException | None = None
        self.attempts = 0
        self.foreign = False  # (bare) the last answer came from a socket not the instance's

    def run(self) -> None:
        try:
            if self.target.own_netns:
                self._enter()
            self.t_ready = self._probe()
        except BaseException as e:  # noqa: BLE001 - handed to the waiting thread
            self.error = e

    def _pause(self, started: float) -> None:
        self._check()
        time.sleep(INTERVAL_S if time.monotonic() - started < FAST_S else SLOW_INTERVAL_S)

    def _check(self) -> None:
        status = self.target.exited()
        foreign = (f" (port {self.ready.port} on the host's loopback answered, but not from this instance: it "
                   f"shares the host's network, and another process holds the port)") if self.foreign else ""
        if status is not None:
            raise BackendError(f"{self.target.name}: exited with status {status} before {self.ready.describe()} "
                               f"answered{foreign}")
        if time.monotonic() > self.deadline or self.stop.is_set():
            raise InstanceTimeout(f"{self.target.name}: {self.ready.describe()} not ready in time{foreign}")

    def _enter(self) -> None:
        """setns into the network namespace of one of the instance's processes (not ours)."""
        own = os.stat("/proc/thread-self/ns/net").st_ino
        started = time.monotonic()
        while True:
            for pid in self.target.pids():
                with contextlib.suppress(OSError):
                    fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
                    try:
                        if os.fstat(fd).st_ino != own:
                            sc.setns(fd, sc.CLONE_NEWNET)
                            if self.target.lo_up:
                                from runtimes.container import namespaces

                                namespaces.loopback_up(namespaces.loopback_up_request())
                            return
                    finally:
                        os.close(fd)
            self._pause(started)

    def _probe(self) -> int:
        started = time.monotonic()
        while True:
            self.attempts += 1
            t = self._attempt()
            if t is not None and (self.target.own_netns or self._owned()):
                return t
            self._pause(started)

    def _attempt(self) -> int | None:
        assert self.ready.port is not None
        if self.ready.kind == "tcp":
            try:
                with socket.create_connection((ADDRESS, self.ready.port), timeout=ATTEMPT_TIMEOUT_S):
                    return now_ns()
            except OSError:
                return None
        conn = http.client.HTTPConnection(ADDRESS, self.ready.port, timeout=ATTEMPT_TIMEOUT_S)
        try:
            conn.request("GET", self.ready.path, headers={"User-Agent": "isobench-probe"})
            status = conn.getresponse().status
            t = now_ns()
            return t if 200 <= status < 300 else None
        except (OSError, http.client.HTTPException):
            return None
        finally:
            conn.close()

    def _owned(self) -> bool:
        """On the host's network: is the listening socket one of the instance's?  (Until it is, the
        answer is another program's: the probe goes on, and says so if the instance never answers.)"""
        assert self.ready.port is not None
        owned = bool(listening_inodes(self.ready.port) & socket_inodes(self.target.pids()))
        self.foreign = not owned
        return owned


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (``/proc/<pid>/task/*/children``), parents first."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop(0)
        found.append(p)
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{p}/task"):
                with contextlib.suppress(OSError), open(f"/proc/{p}/task/{task}/children") as f:
                    todo += [int(c) for c in f.read().split()]
    return found


def listening_inodes(port: int) -> set[int]:
    """Inodes of the sockets listening on TCP ``port`` in this thread's network namespace."""
    found = set()
    for table in ("/proc/thread-self/net/tcp", "/proc/thread-self/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as f:
            next(f, None)
            for line in f:
                fields = line.split()
                if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    found.add(int(fields[9]))
    return found


def socket_inodes(pids: list[int]) -> set[int]:
    """Inodes of the sockets these processes hold open."""
    found = set()
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    link = os.readlink(f"/proc/{pid}/fd/{fd}")
                    if link.startswith("socket:["):
                        found.add(int(link[8:-1]))
    return found
