"""Creating a container's first process: host side (``spawn``) and child side (``_init``).

The harness thread that launches moves its *own* ``pid_ns_for_children`` into a
fresh PID namespace (``unshare(CLONE_NEWPID)`` affects only the calling
thread's future children), forks, and moves back with ``setns``.  So the child
is PID 1 of a new PID namespace *and* a direct child of the harness: no
intermediate supervisor process, and ``waitpid`` reports the workload's own
exit status.

The child (still Python, single-threaded after fork) then builds the rest of
the container and execs the workload, which stays PID 1.  When PID 1 exits the
kernel kills everything else in its PID namespace, so a workload that leaves
children (the ``pids`` workload) leaves nothing behind.

Child -> host status pipe (close-on-exec, so EOF means the exec happened):
``T <step> <monotonic ns>`` per finished step, ``E <message>`` on failure.
Host -> child "go" pipe: one byte once the host has attached the child to the
instance cgroup (see ``spawn``); EOF instead makes the child abort.
"""

from __future__ import annotations

import fcntl
import gc
import os
import select
import signal
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from runtimes import syscalls as sc
from runtimes.container import caps, hardening, mounts, namespaces, seccomp
from runtimes.workloads import MARKER_FD

#: fd of the status pipe in the child while it sets up (above stdio and the marker fd)
STATUS_FD = MARKER_FD + 1
#: fd on which the child waits for the host to have placed it in the instance cgroup
GO_FD = MARKER_FD + 2
#: comm of the child until it execs: ``cleanup_leftovers`` recognises a stuck one by it
INIT_COMM = "isobench-init"
#: the workload's environment carries its instance name, so leftovers can be traced to a run
INSTANCE_ENV = "ISOBENCH_INSTANCE"
#: the steps the child reports (``T <step>``) as it finishes them, in order
STEPS = ("init", "unshare", "mounts", "net", "cgroup_attach", "security", "exec")
#: the phase each step ends (``times.phases``): "security" = rlimits, oom_score_adj, keyring,
#: capabilities, no_new_privs; "seccomp" = loading the filter (the "exec" mark is taken after it)
PHASE_OF_STEP = {"init": "clone", "unshare": "unshare", "mounts": "mounts", "net": "net",
                 "cgroup_attach": "cgroup_attach", "security": "security", "exec": "seccomp"}


class InitError(RuntimeError):
    """The container's init failed before exec; the message says at which step."""


@dataclass(frozen=True)
class InitConfig:
    """Everything the child needs, computed in the harness before the fork."""

    argv: tuple[str, ...]
    env: Mapping[str, str]
    hostname: str
    ns_flags: int  # CLONE_NEW* for mnt/uts/ipc/net (pid is made by the host side, cgroup after joining)
    cgroupns: bool  # enter a cgroup namespace rooted at the instance cgroup
    mount_plan: tuple[mounts.MountOp, ...]
    keep_caps: int
    last_cap: int
    lo_request: bytes | None  # None: no network namespace, leave the network alone
    die_with_parent: bool
    #: signals whose disposition is not SIG_DFL in the harness (Python handlers, SIGPIPE...)
    reset_signals: tuple[int, ...] = ()
    cwd: str = "/"
    #: compiled seccomp program (``seccomp.Filter.bpf``); None: unconfined
    seccomp_bpf: bytes | None = None
    #: (resource number, soft, hard), see ``hardening.rlimit_numbers``
    rlimits: tuple[tuple[int, int, int], ...] = ()
    oom_score_adj: int | None = None
    session_keyring: bool = True


@dataclass
class Spawned:
    pid: int
    #: step (see STEPS) -> CLOCK_MONOTONIC ns at which the child finished it
    marks: dict[str, int] = field(default_factory=dict)
    error: str | None = None


_own_pidns_fd: int | None = None
_lock = threading.Lock()


def _pidns_fd() -> int:
    global _own_pidns_fd
    with _lock:
        if _own_pidns_fd is None:
            _own_pidns_fd = os.open("/proc/thread-self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
        return _own_pidns_fd


def default_signals() -> tuple[int, ...]:
    """Signals this process does not leave at SIG_DFL: the child resets them (read in the parent:
    in the child every object touched costs a copy-on-write fault)."""
    found = []
    for sig in signal.valid_signals():
        try:
            if signal.getsignal(sig) not in (signal.SIG_DFL, None):
                found.append(int(sig))
        except (OSError, ValueError):
            pass
    return tuple(found)


@dataclass
class Child:
    """The host's handles on a forked container init."""

    pid: int
    status_fd: int  # read end of the status pipe
    go_fd: int  # write end: one byte = "you are in your cgroup, go on"; EOF = abort
    t_fork: int

    def release(self, ok: bool) -> None:
        """Let the child go on to exec (``ok``) or make it abort; once."""
        if self.go_fd < 0:
            return
        try:
            if ok:
                os.write(self.go_fd, b"1")
        finally:
            os.close(self.go_fd)
            self.go_fd = -1


def spawn(cfg: InitConfig, stdin: int, stdout: int, stderr: int, marker: int) -> Child:
    """Fork the container's PID 1 (host pid in the result).

    ``stdin``/``stdout``/``stderr``/``marker`` are host fds the child gets as 0, 1, 2 and 3.
    The child sets itself up, then waits for ``Child.release(True)`` before it
    joins its cgroup namespace and execs: the host attaches it to the instance
    cgroup meanwhile (a v1 attach waits ~10 ms for an RCU grace period; done
    in parallel with the child's own setup it mostly disappears).
    """
    own = _pidns_fd()
    status_r, status_w = os.pipe()
    go_r, go_w = os.pipe()
    t_fork = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
    try:
        sc.unshare(sc.CLONE_NEWPID)  # this thread's next child starts a new PID namespace
        try:
            pid = os.fork()
            if pid == 0:  # pragma: no cover - runs in the child, reported over the pipe
                _child(cfg, (stdin, stdout, stderr, marker, status_w, go_r))
        finally:
            sc.setns(own, sc.CLONE_NEWPID)  # back, so the harness's other children are normal
    except BaseException:
        os.close(status_r)
        os.close(go_w)
        raise
    finally:
        os.close(status_w)
        os.close(go_r)
    return Child(pid, status_r, go_w, t_fork)


def read_status(fd: int, pid: int, timeout: float) -> Spawned:
    """Read the child's reports until it execs (EOF); closes ``fd``."""
    out = Spawned(pid)
    buf = b""
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                out.error = f"container init did not reach exec within {timeout:g} s"
                break
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            buf += chunk
    finally:
        os.close(fd)
    for line in buf.decode(errors="replace").splitlines():
        kind, _, rest = line.partition(" ")
        if kind == "T":
            step, _, ns = rest.partition(" ")
            out.marks[step] = int(ns)
        elif kind == "E":
            out.error = rest
    if out.error is None and "exec" not in out.marks:
        out.error = "container init died during setup (no report)"
    return out


# -- the child --------------------------------------------------------------------
def _mark(step: str) -> None:
    os.write(STATUS_FD, f"T {step} {time.clock_gettime_ns(time.CLOCK_MONOTONIC)}\n".encode())


def _child(cfg: InitConfig, fds: tuple[int, ...]) -> None:  # pragma: no cover
    """Never returns: execs the workload or exits 127 after reporting why."""
    status = fds[4]
    try:
        gc.disable()  # a collection would touch (and copy) the harness's pages for nothing
        # The harness's Python handlers must not run here; ignored signals (SIGPIPE)
        # would stay ignored across exec.
        for sig in cfg.reset_signals:
            signal.signal(sig, signal.SIG_DFL)
        os.setsid()
        if cfg.die_with_parent:
            sc.prctl(sc.PR_SET_PDEATHSIG, signal.SIGKILL)
        sc.set_name(INIT_COMM)
        _arrange_fds(fds)
        status = STATUS_FD
        _mark("init")
        _init(cfg)
    except BaseException as e:  # noqa: BLE001 - everything must be reported, then _exit
        # our OSErrors carry the whole story in strerror; str() would prefix "[Errno N]"
        msg = (e.strerror if isinstance(e, OSError) and e.strerror else str(e)) or type(e).__name__
        msg = msg.replace("\n", " ")
        try:
            os.write(status, f"E {msg}\n".encode()[:4000])
        finally:
            os._exit(127)
    os._exit(127)


def _init(cfg: InitConfig) -> None:  # pragma: no cover - runs in the child
    sc.unshare(cfg.ns_flags)
    _mark("unshare")
    mounts.execute(list(cfg.mount_plan))
    _mark("mounts")
    sc.sethostname(cfg.hostname)
    if cfg.lo_request is not None:
        namespaces.loopback_up(cfg.lo_request)
    _mark("net")
    if os.read(GO_FD, 1) != b"1":  # the host attaches us to the cgroup meanwhile
        raise InitError("the harness could not place the container in its cgroup")
    os.close(GO_FD)
    if cfg.cgroupns:
        sc.unshare(sc.CLONE_NEWCGROUP)  # its root is the instance cgroup just joined
    _mark("cgroup_attach")
    harden(cfg)
    _mark("security")
    if cfg.seccomp_bpf is not None:
        seccomp.install(cfg.seccomp_bpf)  # last: from here on only what the profile allows
    _mark("exec")
    try:
        os.execvpe(cfg.argv[0], list(cfg.argv), dict(cfg.env))
    except OSError as e:
        raise OSError(e.errno, f"cannot execute {cfg.argv[0]} in the container: {e.strerror}") from e


def harden(cfg: InitConfig) -> None:  # pragma: no cover - runs in the child
    """Process attributes, then capabilities and no_new_privs (seccomp is loaded after this).

    Any launcher calls it in the child, after the mounts and the cgroup join."""
    hardening.set_rlimits(cfg.rlimits)
    if cfg.oom_score_adj is not None:
        hardening.set_oom_score_adj(cfg.oom_score_adj)
    if cfg.session_keyring:
        hardening.join_session_keyring()
    caps.restrict(cfg.keep_caps, cfg.last_cap)
    caps.no_new_privs()
    signal.pthread_sigmask(signal.SIG_SETMASK, ())
    os.chdir(cfg.cwd)


def _arrange_fds(fds: Sequence[int]) -> None:  # pragma: no cover - runs in the child
    """stdin, stdout, stderr, marker -> 0..3 (inherited); status, go -> 4, 5 (close-on-exec);
    everything else closed."""
    # lift first: a source may sit on a target number (e.g. the status pipe on fd 3)
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 64) for fd in fds]
    for target, fd in enumerate(high):
        os.dup2(fd, target, inheritable=target <= MARKER_FD)
    os.closerange(GO_FD + 1, os.sysconf("SC_OPEN_MAX"))
