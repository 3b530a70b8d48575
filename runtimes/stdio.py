"""A workload's stdin, stdout and stderr: pipes the harness owns, never a file of the host.

Whatever file a workload holds open it can reach again through ``/proc/self/fd/N``: a
container's workload is root in its namespaces, so given the harness's terminal, log file
or ``/dev/null`` it could rewrite, truncate or chmod that host file (a setuid copy of a
shell, a ``/dev/null`` nobody can open).  So every process backend hands its child pipes,
as containerd's shim does:

- stdin: the read end of a pipe nobody writes (EOF at once).  The built-in container
  replaces it with its *own* ``/dev/null``, opened inside the container once its mounts
  are done (``launcher/init.py``, ``launcher/zygote.c``);
- stdout, stderr: the write ends of pipes whose read ends the harness copies to its own
  stdout/stderr (``isobench exec``), to the instance's log (one pipe for both, so their
  lines interleave as they did in a shared file), or nowhere.

What a workload can do to a pipe (chmod or truncate its inode) changes nothing on the host.
One thread (``_Copier``, epoll) copies every instance's output: nothing starts per launch.
The pipes are made, and registered with the copier, before ``t_launch``, with the log
(``runtimes.process.instance_log``); the copy runs beside the workload.

Logs are made ``0600`` in a ``0700`` directory (``create_log``): root writes them from an
untrusted workload's output.  A log nothing was written to is removed when it is closed at the
instance's cleanup (``close_log``): a launch's ``log_path`` is then None.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import threading
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:  # pragma: no cover
    from runtimes.output import Feeder, LineWatch

#: bytes per read of a pipe (its default capacity)
CHUNK = 65536


def create_log(path: Path) -> BinaryIO:
    """A new log file (truncated if it exists) that only root can read, in a directory made
    0700 when this creates it; a symlink at ``path`` is refused (O_NOFOLLOW)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # an existing file keeps its mode through O_CREAT
        return os.fdopen(fd, "wb")
    except BaseException:
        os.close(fd)
        raise


def close_log(log: BinaryIO, path: str | os.PathLike[str]) -> bool:
    """Close a log ``create_log`` made at ``path``, and remove it when nothing was written to it:
    every launch makes its log before it starts, and most workloads say nothing (a soak's 10,000
    launches left as many empty files).  Returns whether the log is kept.  Only the file this
    log is, still empty, is removed: never one put at ``path`` since."""
    made = None
    with contextlib.suppress(OSError, ValueError):  # ValueError: closed already
        log.flush()
        made = os.fstat(log.fileno())
    with contextlib.suppress(OSError):
        log.close()
    if made is None or made.st_size:
        return True
    with contextlib.suppress(OSError):
        now = os.lstat(path)
        if os.path.samestat(now, made) and now.st_size == 0:
            os.unlink(path)
            return False
    return True


class _Stream:
    """One pipe's read end and where its bytes go (``sink`` None: nowhere); ``feeder`` also reads
    them (an image workload ready by a line of its output: ``runtimes.output``)."""

    def __init__(self, fd: int, sink: int | None, feeder: Feeder | None = None):
        self.fd = fd
        self.sink = sink
        self.feeder = feeder
        self.done = threading.Event()  # EOF reached (or the stream was dropped) and fd closed

    def write(self, data: bytes) -> None:
        while data and self.sink is not None:
            try:
                data = data[os.write(self.sink, data):]
            except InterruptedError:
                continue
            except OSError:  # the terminal or log is gone (EPIPE, ENOSPC): drain, keep nothing
                self.sink = None


class _Copier:
    """The thread that copies every registered pipe to its sink (started on first use)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ep: select.epoll | None = None
        self._wake = -1
        self._streams: dict[int, _Stream] = {}
        self._drop: list[_Stream] = []
        self._pid = -1

    def add(self, stream: _Stream) -> None:
        with self._lock:
            if self._pid != os.getpid():  # first use, or a forked child: a thread of its own
                self._start()
            assert self._ep is not None
            self._streams[stream.fd] = stream
            self._ep.register(stream.fd, select.EPOLLIN)

    def drop(self, stream: _Stream) -> None:
        """Stop copying ``stream`` (unread bytes are lost); the copier closes its fd."""
        with self._lock:
            if stream.done.is_set() or self._streams.get(stream.fd) is not stream:
                return
            self._drop.append(stream)
            os.eventfd_write(self._wake, 1)

    def _start(self) -> None:
        self._ep = select.epoll()
        self._wake = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        self._ep.register(self._wake, select.EPOLLIN)
        self._streams, self._drop, self._pid = {}, [], os.getpid()
        threading.Thread(target=self._run, args=(self._ep,), name="isobench-stdio", daemon=True).start()

    def _run(self, ep: select.epoll) -> None:
        while True:
            try:
                events = ep.poll()
            except InterruptedError:
                continue
            for fd, _ in events:
                if fd == self._wake:
                    with contextlib.suppress(BlockingIOError):
                        os.eventfd_read(self._wake)
                    continue
                stream = self._streams.get(fd)
                if stream is None:
                    continue
                try:
                    data = os.read(fd, CHUNK)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    self._finish(ep, stream)
                    continue
                try:
                    if stream.feeder is not None:  # first: its receive time is the line's
                        stream.feeder.feed(data)
                    stream.write(data)
                except Exception:  # noqa: BLE001 - one stream's failure must not stall every other:
                    stream.sink = None  # it is drained from here on, never left to fill and block
            with self._lock:
                dropped, self._drop = self._drop, []
            for stream in dropped:
                self._finish(ep, stream)

    def _finish(self, ep: select.epoll, stream: _Stream) -> None:
        """Only this thread closes a read end: no read can run on a number reused meanwhile."""
        with self._lock:
            if self._streams.get(stream.fd) is not stream:
                return
            del self._streams[stream.fd]
            ep.unregister(stream.fd)
            os.close(stream.fd)
        if stream.feeder is not None:
            stream.feeder.close()
        stream.done.set()


_COPIER = _Copier()


def _pipe() -> tuple[int, int]:
    r, w = os.pipe()  # both close-on-exec: a child gets them only as its 0-2
    fcntl.fcntl(r, fcntl.F_SETFL, os.O_NONBLOCK)
    return r, w


class Stdio:
    """One instance's stdio.  ``child``: the fds its process gets as 0, 1 and 2 (the harness's
    copies are closed by ``spawned()``); the output is copied until EOF (``drain``) or ``close``.

    ``sinks``: where stdout and stderr go, as fds of the harness (None: nowhere); the same
    fd twice means one pipe for both.  ``log`` (a file whose fd is a sink) is closed by ``close``.
    """

    def __init__(self, sinks: tuple[int | None, int | None], log: BinaryIO | None = None,
                 path: str | None = None, watch: LineWatch | None = None):
        self.log, self.path = log, path
        #: reads stdout and stderr line by line too (``runtimes.output``), else None
        self.watch = watch
        self._child: list[int] = []
        self._streams: list[_Stream] = []
        try:
            r, w = os.pipe()  # stdin: nobody writes it
            os.close(w)
            self._child.append(r)
            out = self._stream(sinks[0])
            err = out if sinks[1] == sinks[0] else self._stream(sinks[1])
            self._child += [out, err]
        except BaseException:
            self.close()
            raise

    def _stream(self, sink: int | None) -> int:
        r, w = _pipe()
        self._child.append(w)  # closed by spawned() or close(), whatever happens next
        stream = _Stream(r, sink, self.watch.feeder() if self.watch is not None else None)
        try:
            _COPIER.add(stream)
        except BaseException:
            os.close(r)
            raise
        self._streams.append(stream)
        return w

    @classmethod
    def inherit(cls, watch: LineWatch | None = None) -> Stdio:
        """``isobench exec``: stdout to the harness's stdout, stderr to its stderr."""
        return cls((1, 2), watch=watch)

    @classmethod
    def to_log(cls, path: Path, watch: LineWatch | None = None) -> Stdio:
        """stdout and stderr, interleaved, to a new log at ``path`` (``create_log``)."""
        log = create_log(path)
        try:
            return cls((log.fileno(), log.fileno()), log, str(path), watch)
        except BaseException:
            log.close()
            raise

    @classmethod
    def discard(cls, watch: LineWatch | None = None) -> Stdio:
        return cls((None, None), watch=watch)

    @property
    def child(self) -> tuple[int, int, int]:
        """stdin, stdout, stderr for the child (valid until ``spawned``/``close``)."""
        stdin, out, *rest = self._child
        return stdin, out, (rest[0] if rest else out)

    def spawned(self) -> None:
        """The child has its copies: close the harness's, so EOF comes when the child's go."""
        for fd in dict.fromkeys(self._child):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._child = []

    def drain(self, timeout: float) -> bool:
        """Wait until every stream reached EOF (all of the workload's copies closed); True if so."""
        return all(s.done.wait(timeout) for s in self._streams)

    def close(self) -> None:
        """Stop copying (what is still unread is lost) and close the log (``close_log``: an empty
        one is removed, and ``path`` becomes None).  Idempotent."""
        self.spawned()
        for s in self._streams:
            _COPIER.drop(s)
        for s in self._streams:
            s.done.wait(1.0)  # the copier closes the read end; the log may close after it
        if self.log is not None:
            assert self.path is not None  # a log is always made at a path (to_log)
            if not close_log(self.log, self.path):
                self.path = None  # nothing was written: no log
            self.log = None
