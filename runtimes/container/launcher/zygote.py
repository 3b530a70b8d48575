"""The zygote launcher, host side: a small helper that forks each container's PID 1.

Two zygotes speak the same protocol (``zygote_server``'s doc): the native one
(``zygote.c``, built by ``native.py``; requests encoded by ``wire.py``),
whose child runs the whole setup in C, and the Python one (``zygote_server``),
whose child runs ``init.child_main``.  ``Zygote(kind)`` picks; ``resolve()``
builds the native binary (before any t_launch) or falls back to Python with a
recorded reason (``describe()``).

Forking the harness itself costs milliseconds (its address space is large, and
the child's exec then tears that copy down again).  The zygote is a fresh
``python -I`` that has imported only the child-side modules
(``zygote_server``); it is started once per backend *before* any t_launch, its
start time is measured (``Zygote.start`` returns it), and each launch is one
request over a SOCK_SEQPACKET socketpair (see ``zygote_server`` for the
protocol).  The zygote clones with CLONE_PARENT, so the container init is a
child of the harness: ``ChildProcess`` waits for it exactly as for a forked one.

Lifetime: owned by the backend (``ContainerBackend.close``); it dies with the
harness (parent-death signal, and EOF on its socket); its comm is
``isobench-zygote``, in a process group of its own.  A zygote that died fails
the launch that found it dead, with its exit status and last stderr lines; the
next launch starts a new one.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

from runtimes import trust
from runtimes.base import BackendError, now_ns
from runtimes.container.launcher import init, native, template, wire
from runtimes.container.launcher.zygote_server import MAX_REQUEST, ZYGOTE_COMM
from runtimes.container.mounts import MountOp

#: the repository root, put on the zygote's sys.path (``-I`` ignores PYTHONPATH and the cwd)
ROOT = str(Path(__file__).resolve().parents[3])
BOOT = ("import sys; sys.path.insert(0, sys.argv[1]); from runtimes.container.launcher.zygote_server import main; "
        "main(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == '1')")
#: a liveness bound, not a speed goal: inside an emulated (TCG) guest on a loaded host, where CI
#: runs the v2 tests, the zygote's Python start alone took 23 s and sometimes over 30 s
START_TIMEOUT_S = 180.0
#: one request only clones: anything near this means a hung zygote
REQUEST_TIMEOUT_S = 10.0
#: the zygotes there are: C (default) and Python (the fallback, and for A/B)
KINDS = ("native", "python")


class _PlanPickler(pickle.Pickler):
    """Pickles a config with its (prepared) mount plan as a number: unpickling ~30 mount
    operations per launch cost ~0.3 ms in the zygote."""

    def __init__(self, file: io.BytesIO, plan_ids: dict[int, int]):
        super().__init__(file, pickle.HIGHEST_PROTOCOL)
        self.plan_ids = plan_ids

    def persistent_id(self, obj: object) -> int | None:
        return self.plan_ids.get(id(obj)) if type(obj) is tuple else None


class ZygoteError(BackendError):
    """The zygote could not be started, or died; the message says how."""


class Zygote:
    """One zygote process; thread-safe (requests are serialised)."""

    def __init__(self, kind: str = "native") -> None:
        if kind not in KINDS:
            raise ValueError(f"zygote must be one of {', '.join(KINDS)}, got {kind!r}")
        #: what runs: "native", or "python" (asked for, or the native one could not be built)
        self.kind = kind
        #: why the Python zygote runs where the native one was asked for (None: it was not)
        self.fallback: str | None = None
        self._binary: str | None = None
        self._resolved = kind == "python"
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._stderr: int = -1
        #: the zygote's parent thread is the main thread (see ``die_with_parent``)
        self.from_main_thread = False
        #: how long the last start took (ns), and how many starts there were
        self.start_ns: int | None = None
        self.starts = 0
        #: mount plans this zygote has prepared -> (their number there, None or why it could not)
        self._prepared: dict[tuple[MountOp, ...], tuple[int, str | None]] = {}
        #: id() of each prepared plan -> its number: a request names the plan instead of carrying it
        self._plan_ids: dict[int, int] = {}
        #: native: id() of a plan -> (the plan, kept alive; its launch record: a number or the ops)
        self._plan_recs: dict[int, tuple[tuple[MountOp, ...], bytes]] = {}

    def resolve(self) -> None:
        """Build (or find cached) the native zygote; on failure fall back to Python, recording why.
        Called before any t_launch: a build is not part of a launch."""
        if self._resolved:
            return
        self._resolved = True
        try:
            self._binary = str(native.build())
        except native.NativeUnavailable as e:
            self.kind, self.fallback = "python", str(e)
        except trust.Untrusted as e:  # refused, not replaced by the other zygote behind the user's back
            self._resolved = False
            raise ZygoteError(str(e)) from None

    def describe(self) -> str:
        """Which zygote runs, for the run's metadata: "native", or "python" with why."""
        if self.kind == "native":
            return "native"
        return f"python (the native one is unavailable: {self.fallback})" if self.fallback else "python (asked for)"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def ensure(self) -> int | None:
        """Start the zygote unless it runs; the start's duration (ns) when it started now."""
        with self._lock:
            if self.alive():
                return None
            self._reap()
            return self._start()

    def _start(self) -> int:
        t0 = now_ns()
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        err_r, err_w = os.pipe()
        main = threading.current_thread() is threading.main_thread()
        try:
            fcntl.fcntl(err_r, fcntl.F_SETFL, os.O_NONBLOCK)
            args = [str(theirs.fileno()), str(os.getpid()), "1" if main else "0"]
            if self._binary is not None and not os.access(self._binary, os.X_OK):
                self._resolved = False  # pruned by a harness built from another source: build it again
            self.resolve()
            if self._binary is not None:  # every start runs only what was built and sealed
                try:
                    native.verified(Path(self._binary))
                except trust.Untrusted as e:
                    raise ZygoteError(str(e)) from None
            if self._binary is not None:  # argv[0] is its name: ps and the leftovers sweep show it
                argv, exe = [ZYGOTE_COMM, *args], self._binary
            else:
                argv, exe = [sys.executable, "-I", "-c", BOOT, ROOT, *args, ZYGOTE_COMM], sys.executable
            self._proc = subprocess.Popen(
                argv, executable=exe, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err_w,
                pass_fds=(theirs.fileno(),), start_new_session=True)
        except BaseException:
            mine.close()
            os.close(err_r)
            raise
        finally:
            theirs.close()
            os.close(err_w)
        self._sock, self._stderr, self.from_main_thread = mine, err_r, main
        mine.settimeout(START_TIMEOUT_S)
        try:
            hello = mine.recv(64)
        except OSError:
            hello = b""
        if not hello.startswith(b"R "):
            raise self._died("did not start")
        mine.settimeout(REQUEST_TIMEOUT_S)
        self.start_ns = now_ns() - t0
        self.starts += 1
        return self.start_ns

    def spawn(self, cfg: init.InitConfig, stdin: int, stdout: int, stderr: int, marker: int) -> init.Child:
        """Ask the zygote for a container init with these fds as 0-3 (see ``init.spawn``)."""
        msg = self._launch_message(cfg)
        if len(msg) > MAX_REQUEST:
            raise BackendError(f"container configuration too large for the zygote ({len(msg)} bytes)")
        status_r, status_w = os.pipe()
        try:
            with self._lock:
                if self._sock is None or not self.alive():
                    raise self._died("was not running")
                try:
                    socket.send_fds(self._sock, [msg], [stdin, stdout, stderr, marker, status_w])
                    reply = self._sock.recv(4096).decode(errors="replace")
                except OSError:
                    reply = ""
                if not reply:
                    raise self._died("died while forking a container")
        except BaseException:
            os.close(status_r)
            raise
        finally:
            os.close(status_w)
        kind, _, rest = reply.partition(" ")
        if kind != "P":
            os.close(status_r)
            raise BackendError(f"the zygote could not fork the container: {rest}")
        pid, t_fork, born, prepared = rest.split()
        return init.Child(int(pid), status_r, int(t_fork), born_in_cgroup=born == "1", prepared_root=prepared == "1")

    def prepare(self, plan: tuple[MountOp, ...]) -> str | None:
        """Have the zygote build the shared part of ``plan`` (template.py), once per zygote;
        None when prepared, else why containers run the whole plan."""
        with self._lock:
            if plan in self._prepared:
                return self._prepared[plan][1]
            if self._sock is None or not self.alive():
                raise self._died("was not running")
            number = len(self._prepared)
            try:
                request = self._prepare_message(number, plan)
            except wire.WireError as e:
                request, reply = b"", f"T 0 {e}"
            if request:
                try:
                    self._sock.send(request)
                    reply = self._sock.recv(4096).decode(errors="replace")
                except OSError:
                    reply = ""
            if not reply.startswith("T "):
                raise self._died("died while preparing the container root")
            why = None if reply[2:3] == "1" else reply[4:] or "unknown"
            self._prepared[plan] = (number, why)  # (the key keeps the plan, and so its id, alive)
            self._plan_ids[id(plan)] = number
            if self.kind == "native":
                self._plan_recs[id(plan)] = (plan, wire.plan_number(number) if why is None else
                                             wire.encode_ops(b"m", plan))
            return why

    def _prepare_message(self, number: int, plan: tuple[MountOp, ...]) -> bytes:
        """The ``T`` request (empty: the answer is known without asking)."""
        if self.kind == "python":
            return b"T" + pickle.dumps((number, plan), pickle.HIGHEST_PROTOCOL)
        halves = template.split(plan)
        if halves is None:
            raise wire.WireError("this plan has a step that runs per container")
        return wire.encode_prepare(number, halves)

    def _launch_message(self, cfg: init.InitConfig) -> bytes:
        if self.kind == "python":
            buf = io.BytesIO()
            buf.write(b"L")
            _PlanPickler(buf, self._plan_ids).dump(cfg)
            return buf.getvalue()
        rec = self._plan_recs.get(id(cfg.mount_plan))
        try:
            plan = rec[1] if rec is not None and rec[0] is cfg.mount_plan else wire.encode_ops(b"m", cfg.mount_plan)
            return wire.encode_launch(cfg, plan)
        except wire.WireError as e:
            raise BackendError(f"the native zygote cannot run this configuration: {e}") from e

    def _died(self, what: str) -> ZygoteError:
        """Collect a dead (or hung) zygote; the error that says why.  With the lock held."""
        pid = self.pid
        how = self._reap()
        return ZygoteError(f"the container launcher ({ZYGOTE_COMM}, pid {pid}) {what}: {how}")

    def _reap(self) -> str:
        """Kill and collect the zygote (if any); what became of it, with its last stderr."""
        how = "not started"
        if self._proc is not None:
            if self._proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self._proc.pid, signal.SIGKILL)
            rc = self._proc.wait()
            how = f"killed by {signal.Signals(-rc).name}" if rc < 0 else f"exit status {rc}"
            self._proc = None
        self._prepared.clear()
        self._plan_ids.clear()
        self._plan_recs.clear()
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._stderr >= 0:
            tail = b""
            with contextlib.suppress(OSError):
                while chunk := os.read(self._stderr, 65536):
                    tail = (tail + chunk)[-2000:]
            os.close(self._stderr)
            self._stderr = -1
            lines = tail.decode(errors="replace").strip().splitlines()
            if lines:
                how += f"; its stderr ended with: {' | '.join(lines[-3:])}"
        return how

    def close(self, timeout: float = 2.0) -> None:
        """Stop the zygote: EOF on its socket ends it; SIGKILL if it lingers.  Idempotent."""
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None
            if self._proc is not None and self._proc.poll() is None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._proc.wait(timeout)
            self._reap()

