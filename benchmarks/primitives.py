"""Helpers for the floor microbenchmarks: one kernel primitive timed alone.

Most primitives change the calling process for good (a namespace, a root), so
they run in a forked child: ``Worker`` forks it and lets it ``prepare`` (not
timed: e.g. enter a mount namespace first), then the timed part is only "go"
to the child, the child doing ``op``, and "done" back.  That round trip over
two pipes is measured on its own (``roundtrip``) and ``harness.floor``
subtracts it.  A child exits after its op, outside the timed part, so the
teardown of what it made (a network namespace is freed in a kernel worker)
is not counted either.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from runtimes import cgroups
from runtimes.process import kill_and_reap

#: marks every benchmark whose value enters ``harness.floor``
FLOOR = "floor"


def floor_info(benchmark: Any, primitive: str, *, method: str, in_floor: bool = True,
               teardown: bool = False, **extra: Any) -> None:
    """What ``harness.floor`` reads back from the JSON (``extra_info``)."""
    benchmark.extra_info.update({FLOOR: in_floor, "primitive": primitive, "method": method,
                                 "teardown": teardown, **extra})


class Worker:
    """A forked child that runs ``prepare()``, then ``op()`` when told; the parent times go -> done."""

    def __init__(self, op: Callable[[], None], prepare: Callable[[], None] | None = None):
        self.op = op
        self.prepare = prepare
        self.pid: int | None = None
        self._go = self._done = -1

    def start(self) -> None:
        """Untimed (pedantic ``setup``): reap the previous child, fork and prepare the next one."""
        self.reap()
        go_r, go_w = os.pipe()
        done_r, done_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            os.close(go_w)
            os.close(done_r)
            code = 0
            try:
                if self.prepare is not None:
                    self.prepare()
                os.write(done_w, b"r")
                os.read(go_r, 1)
                self.op()
                os.write(done_w, b"d")
            except BaseException as e:  # reported to the parent, which fails the benchmark
                with contextlib.suppress(OSError):
                    os.write(done_w, b"E" + f"{type(e).__name__}: {e}".encode()[:500])
                code = 1
            os._exit(code)
        os.close(go_r)
        os.close(done_w)
        self.pid, self._go, self._done = pid, go_w, done_r
        self._expect(b"r")

    def go(self) -> None:
        """Timed (pedantic ``target``): one byte there, one back, ``op`` in between."""
        os.write(self._go, b"g")
        self._expect(b"d")

    def _expect(self, tag: bytes) -> None:
        got = os.read(self._done, 1)
        if got != tag:
            rest = os.read(self._done, 600) if got == b"E" else b""
            self.reap()
            raise RuntimeError(f"benchmark child failed: {(got + rest).decode(errors='replace') or 'died'}")

    def reap(self) -> None:
        for fd in (self._go, self._done):
            if fd >= 0:
                os.close(fd)
        self._go = self._done = -1
        if self.pid is not None:
            kill_and_reap(self.pid)
            self.pid = None

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.reap()


def run_worker(benchmark: Any, worker: Worker, rounds: int, warmup_rounds: int = 1) -> None:
    with worker:
        benchmark.pedantic(worker.go, setup=worker.start, rounds=rounds, warmup_rounds=warmup_rounds)


class CgroupDirs:
    """Raw directories for one benchmark cgroup: mkdir/write/rmdir only (no Python layers)."""

    def __init__(self, dirs: list[str]):
        self.dirs = dirs
        self.procs = [os.path.join(d, "cgroup.procs") for d in dirs]
        self.child: int | None = None

    def mkdir(self) -> None:
        for d in self.dirs:
            os.mkdir(d)

    def remove(self) -> None:
        """The timed removal: rmdir only (empty cgroups)."""
        for d in self.dirs:
            os.rmdir(d)

    def rmdir(self) -> None:
        """Untimed: whatever is there goes (the child first), tolerant of a half state."""
        self.kill_child()
        for d in self.dirs:
            if os.path.isdir(d):
                cgroups.remove_dir(Path(d))

    def fork_child(self) -> None:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - a process to place
            while True:
                time.sleep(60)
        self.child = pid

    def kill_child(self) -> None:
        if self.child is not None:
            os.kill(self.child, 9)
            os.waitpid(self.child, 0)
            self.child = None

    def place(self) -> None:
        pid = str(self.child).encode()
        for p in self.procs:
            fd = os.open(p, os.O_WRONLY)
            try:
                os.write(fd, pid)
            finally:
                os.close(fd)
