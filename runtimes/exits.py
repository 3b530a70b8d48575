"""When a process the harness does not reap exited, from the kernel's own exit events.

An OCI runtime in the foreground (``run``) reaps the container's init itself,
then deletes the container (cgroups, state) and only then exits: the runtime's
exit is not the workload's.  A destroyed libvirt guest's QEMU is libvirtd's
child, and libvirt's STOPPED event follows its own teardown of the domain.
The harness cannot wait for a process that is not its child, and a pidfd
opened after the ready line races the runtime's reaping (a noop exits within
microseconds).  So those backends listen to the proc connector (netlink,
``CONFIG_PROC_EVENTS``, root, the initial PID namespace), which reports every
exit with the kernel's ``CLOCK_MONOTONIC`` timestamp -- the clock of
``now_ns``.  For OCI the container's init is the runtime's child that ended
last before the runtime did (runc's and crun's setup helpers end before it,
and nothing is forked after it); for a guest, QEMU's pid.

One socket per backend; the kernel queues events until ``drain`` reads them
(no thread: nothing of this runs inside another backend's window).  Kernels
from 6.6 on filter to exit events in the kernel; older ones send every event
and the rest are skipped.  A queue that overflowed loses events: the instance
then has no exit event (``ExitEvents.lost`` says that happened).
"""

from __future__ import annotations

import array
import contextlib
import os
import socket
import struct
import weakref
from collections.abc import Iterator

from runtimes.base import now_ns

NETLINK_CONNECTOR = 11
CN_IDX_PROC = 1
CN_VAL_PROC = 1
PROC_CN_MCAST_LISTEN = 1
PROC_CN_MCAST_IGNORE = 2
PROC_EVENT_EXIT = 0x80000000
SO_RCVBUFFORCE = 33
NLMSG_DONE = 3
#: kernel queue for events between two drains (root may exceed rmem_max)
RCVBUF = 8 << 20
#: nlmsghdr (16) + cn_msg (20): where struct proc_event starts
_EVENT = 36
_HEADER = struct.Struct("=IIQ")  # what, cpu, timestamp_ns
_EXIT = struct.Struct("=6i")  # pid, tgid, exit code, exit signal, parent pid, parent tgid
#: exits kept between drains and look-ups (parent tgid, tgid, timestamp)
KEEP = 4096


class _Ring:
    """The last ``size`` exits, in three arrays allocated whole at the start: a deque of tuples
    grew the harness by ~650 KiB while it filled with the host's exits (a soak's slope that was
    no leak); this takes its memory once."""

    def __init__(self, size: int):
        self.size, self.n = size, 0
        self.parents, self.tgids, self.times = (array.array("q", bytes(8 * size)) for _ in range(3))

    def append(self, event: tuple[int, int, int]) -> None:
        i = self.n % self.size
        self.parents[i], self.tgids[i], self.times[i] = event
        self.n += 1

    def __iter__(self) -> Iterator[tuple[int, int, int]]:
        return zip(self.parents[:min(self.n, self.size)], self.tgids, self.times, strict=False)


def _filters_in_kernel() -> bool:
    """Linux 6.6 added the event-type filter to PROC_CN_MCAST_LISTEN (older ones ignore the message)."""
    try:
        major, minor = (int(x) for x in os.uname().release.split(".")[:2])
    except ValueError:
        return False
    return (major, minor) >= (6, 6)


def _control(op: int, exit_only: bool) -> bytes:
    payload = struct.pack("=II", op, PROC_EVENT_EXIT) if exit_only else struct.pack("=I", op)
    cn = struct.pack("=IIIIHH", CN_IDX_PROC, CN_VAL_PROC, 0, 0, len(payload), 0) + payload
    return struct.pack("=IHHII", 16 + len(cn), NLMSG_DONE, 0, 0, 0) + cn


def parse(datagram: bytes) -> tuple[int, int, int] | None:
    """(parent tgid, tgid, timestamp ns) of a thread-group leader's exit event, else None."""
    if len(datagram) < _EVENT + _HEADER.size + _EXIT.size:
        return None
    what, _cpu, ts = _HEADER.unpack_from(datagram, _EVENT)
    if what != PROC_EVENT_EXIT:
        return None
    pid, tgid, _code, _sig, _ppid, ptgid = _EXIT.unpack_from(datagram, _EVENT + _HEADER.size)
    return (ptgid, tgid, ts) if pid == tgid else None


def _unsubscribe(sock: socket.socket, exit_only: bool) -> None:
    """Tell the kernel this listener is gone, then close: the kernel counts listeners by these
    messages alone (a socket closed without one leaves its count up, and every fork, exec and
    exit on the host keeps building an event for nobody)."""
    with contextlib.suppress(OSError):
        sock.send(_control(PROC_CN_MCAST_IGNORE, exit_only))
    sock.close()


class ExitEvents:
    """A proc connector subscription; raises OSError when it cannot be made.

    Released by ``close()``; one never closed is released when it is collected or when the
    interpreter exits (``weakref.finalize``), so every exit path but SIGKILL sends the kernel
    its IGNORE.  After a SIGKILL the kernel frees the socket but keeps counting the listener
    (``cn_release`` frees the socket's filter only): nothing in user space can undo that."""

    def __init__(self) -> None:
        self._exit_only = _filters_in_kernel()
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_CONNECTOR)
        self._sock: socket.socket | None = sock
        self._release = weakref.finalize(self, _unsubscribe, sock, self._exit_only)
        try:
            with contextlib.suppress(OSError):  # without it: the default queue
                sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF)
            sock.bind((0, CN_IDX_PROC))
            sock.send(_control(PROC_CN_MCAST_LISTEN, self._exit_only))
            sock.setblocking(False)
        except BaseException:
            self.close()
            raise
        self._exits = _Ring(KEEP)
        #: the kernel dropped events since this subscription began (its queue overflowed)
        self.lost = False
        self._probe()

    def _probe(self) -> None:
        """A subscription the kernel ignores (outside the initial PID or user namespace) sends
        nothing and says nothing: see one child's exit arrive, else raise OSError."""
        since = now_ns()
        pid = os.posix_spawn("/bin/true", ["true"], {})
        os.waitpid(pid, 0)
        if self.exit_of(pid, since) is None:
            self.close()
            raise OSError(0, "the kernel sends no exit events here (not its initial PID namespace?)")

    def drain(self) -> None:
        """Read what the kernel queued; keeps the exits of thread-group leaders."""
        while self._sock is not None:
            try:
                data = self._sock.recv(65536)
            except BlockingIOError:
                return
            except OSError:  # ENOBUFS: the queue overflowed, events are gone
                self.lost = True
                continue
            if (ev := parse(data)) is not None:
                self._exits.append(ev)

    def last_child_exit(self, parent: int, since_ns: int) -> int | None:
        """When the child of ``parent`` that exited last (from ``since_ns`` on) exited, if seen."""
        self.drain()
        times = [ts for ptgid, _tgid, ts in self._exits if ptgid == parent and ts >= since_ns]
        return max(times) if times else None

    def exit_of(self, tgid: int, since_ns: int) -> int | None:
        """When process ``tgid`` exited (from ``since_ns`` on), if seen."""
        self.drain()
        times = [ts for _ptgid, t, ts in self._exits if t == tgid and ts >= since_ns]
        return min(times) if times else None

    def close(self) -> None:
        """Unsubscribe (the kernel counts listeners) and close; idempotent."""
        self._sock = None
        self._release()  # runs _unsubscribe once, whoever asks first

    def fileno(self) -> int:
        """The socket's descriptor (-1 once closed): how a sampler finds the subscription."""
        return self._sock.fileno() if self._sock is not None else -1
