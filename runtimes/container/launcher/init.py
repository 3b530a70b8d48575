"""Creating a container's first process: host side (``spawn``) and child side (``child_main``).

Two launchers make the child (``backend.py`` picks one):

- the zygote (``zygote.py``): a small helper process forks it with
  ``clone3(CLONE_PARENT | CLONE_NEWPID [| CLONE_INTO_CGROUP])``;
- ``spawn`` here, the fallback: the harness thread that launches moves its *own*
  ``pid_ns_for_children`` into a fresh PID namespace (``unshare(CLONE_NEWPID)``
  affects only the calling thread's future children), forks, and moves back
  with ``setns``.

Either way the child is PID 1 of a new PID namespace *and* a direct child of
the harness (CLONE_PARENT makes the zygote's child its sibling): no supervisor
in between, and ``waitpid`` reports the workload's own exit status.  The fork
launcher and the Python zygote run the child-side code here, ``child_main``; the
native zygote (the default, ``zygote.c``) runs the same steps in C, with the
same reports on the status pipe: keep the two in step (``test_zygote``'s
``test_both_launchers_run_the_same_child_setup`` compares them from inside).

The child (still Python, single-threaded) joins its cgroup first unless it was
born in it (see ``_join_cgroup``), builds the rest of the container and execs
the workload, which stays PID 1.  When PID 1 exits the kernel kills everything
else in its PID namespace, so a workload that leaves children (the ``pids``
workload) leaves nothing behind.

Child -> host status pipe (close-on-exec, so EOF means the exec happened):
``T <step> <monotonic ns>`` per finished step, ``E <message>`` on failure.
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
from runtimes.container import mounts, namespaces
from runtimes.container.security import caps, hardening, seccomp
from runtimes.workloads import MARKER_FD

#: fd of the status pipe in the child while it sets up (above stdio and the marker fd)
STATUS_FD = MARKER_FD + 1
#: fd of the zygote's prepared root (a mount namespace, see template.py), when there is one
MOUNT_NS_FD = STATUS_FD + 1
#: comm of the child until it execs: ``cleanup_leftovers`` recognises a stuck one by it
INIT_COMM = "isobench-init"
#: the container's stdin, opened inside it once its root is in place (``_own_stdin``)
CONTAINER_NULL = "/dev/null"
#: the workload's environment carries its instance name, so leftovers can be traced to a run
INSTANCE_ENV = "ISOBENCH_INSTANCE"
#: the steps the child reports (``T <step>``) as it finishes them, in order
#: (``cgroup_attach`` is missing when the child was born in its cgroup, or has none)
STEPS = ("init", "cgroup_attach", "unshare", "mounts", "net", "security", "exec")
#: the phase each step ends (``times.phases``): "security" = rlimits, oom_score_adj, keyring,
#: capabilities, no_new_privs; "seccomp" = loading the filter (the "exec" mark is taken after it)
PHASE_OF_STEP = {"init": "clone", "cgroup_attach": "cgroup_attach", "unshare": "unshare", "mounts": "mounts",
                 "net": "net", "security": "security", "exec": "seccomp"}


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
    #: files the child writes "0" to, to move itself into the instance cgroup (v1: each
    #: hierarchy's ``tasks``; v2: ``cgroup.procs``); empty without a cgroup
    attach_files: tuple[str, ...] = ()
    #: v2 only: the cgroup directory a zygote may clone the child straight into
    cgroup_dir: str | None = None
    #: compiled seccomp program (``seccomp.Filter.bpf``); None: unconfined
    seccomp_bpf: bytes | None = None
    #: (resource number, soft, hard), see ``hardening.rlimit_numbers``
    rlimits: tuple[tuple[int, int, int], ...] = ()
    oom_score_adj: int | None = None
    session_keyring: bool = True
    #: (uid, gid, supplementary groups) the workload runs as (an image's ``User``); None: root,
    #: untouched.  Switched after the capabilities were cut: a non-root user keeps none effective
    user: tuple[int, int, tuple[int, ...]] | None = None
    #: the marker pipe is the workload's fd 3 (catalog); False: fd 3 is close-on-exec (an image's
    #: process gets no fd 3)
    marker: bool = True


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
    t_fork: int  # CLOCK_MONOTONIC ns just before the fork
    born_in_cgroup: bool = False  # clone3(CLONE_INTO_CGROUP): no attach step
    prepared_root: bool = False  # below the zygote's prepared root (template.py)


def spawn(cfg: InitConfig, stdin: int, stdout: int, stderr: int, marker: int) -> Child:
    """Fork the container's PID 1 from this (harness) process; host pid in the result.

    ``stdin``/``stdout``/``stderr``/``marker`` are host fds the child gets as 0, 1, 2 and 3.
    """
    own = _pidns_fd()
    status_r, status_w = os.pipe()
    t_fork = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
    try:
        sc.unshare(sc.CLONE_NEWPID)  # this thread's next child starts a new PID namespace
        try:
            pid = os.fork()
            if pid == 0:  # pragma: no cover - runs in the child, reported over the pipe
                child_main(cfg, (stdin, stdout, stderr, marker, status_w), born_in_cgroup=False)
        finally:
            sc.setns(own, sc.CLONE_NEWPID)  # back, so the harness's other children are normal
    except BaseException:
        os.close(status_r)
        raise
    finally:
        os.close(status_w)
    return Child(pid, status_r, t_fork)


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


def child_main(cfg: InitConfig, fds: tuple[int, ...], born_in_cgroup: bool,
               mount_ns: bool = False) -> None:  # pragma: no cover
    """The container's PID 1 until it execs; never returns: execs the workload or exits 127
    after reporting why.  ``fds``: stdin, stdout, stderr, marker, status write end, and with
    ``mount_ns`` the prepared root's namespace (``cfg.mount_plan`` then holds only the
    container's own steps, see template.py)."""
    status = fds[4]
    try:
        gc.disable()  # a collection would touch (and copy) the parent's pages for nothing
        # The harness's Python handlers must not run here; ignored signals (SIGPIPE)
        # would stay ignored across exec.
        for sig in cfg.reset_signals:
            signal.signal(sig, signal.SIG_DFL)
        os.setsid()
        if cfg.die_with_parent:
            sc.prctl(sc.PR_SET_PDEATHSIG, signal.SIGKILL)
        sc.set_name(INIT_COMM)
        _arrange_fds(fds, cfg.marker)
        status = STATUS_FD
        _mark("init")
        _init(cfg, born_in_cgroup, mount_ns)
    except BaseException as e:  # noqa: BLE001 - everything must be reported, then _exit
        # our OSErrors carry the whole story in strerror; str() would prefix "[Errno N]"
        msg = (e.strerror if isinstance(e, OSError) and e.strerror else str(e)) or type(e).__name__
        msg = msg.replace("\n", " ")
        try:
            os.write(status, f"E {msg}\n".encode()[:4000])
        finally:
            os._exit(127)
    os._exit(127)


def _join_cgroup(files: tuple[str, ...]) -> None:  # pragma: no cover - runs in the child
    """Move this (single-threaded) process into its cgroup before anything else happens.

    On v1 it writes "0" to each hierarchy's ``tasks``: moving one's own single
    thread skips the global threadgroup lock, whose write side waits for an RCU
    grace period (8-12 ms here when cold) -- the wait a host-side write of the
    pid to ``cgroup.procs`` pays (kernel 6.1+; older kernels lock either way).
    Being single-threaded, the whole process has moved.
    """
    for f in files:
        try:
            fd = os.open(f, os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(fd, b"0")
            finally:
                os.close(fd)
        except OSError as e:
            raise OSError(e.errno, f"cannot join the instance cgroup ({f}): {e.strerror}") from e


def _init(cfg: InitConfig, born_in_cgroup: bool, mount_ns: bool) -> None:  # pragma: no cover - runs in the child
    if cfg.attach_files and not born_in_cgroup:
        _join_cgroup(cfg.attach_files)
        _mark("cgroup_attach")
    if mount_ns:  # into the prepared root; the unshare below makes this container's own copy
        sc.setns(MOUNT_NS_FD, sc.CLONE_NEWNS)
        os.close(MOUNT_NS_FD)
    # the cgroup namespace is rooted at the instance cgroup, joined above (or born in)
    sc.unshare(cfg.ns_flags | (sc.CLONE_NEWCGROUP if cfg.cgroupns else 0))
    _mark("unshare")
    mounts.execute(list(cfg.mount_plan))
    _own_stdin()
    _mark("mounts")
    sc.sethostname(cfg.hostname)
    if cfg.lo_request is not None:
        namespaces.loopback_up(cfg.lo_request)
    _mark("net")
    harden(cfg)
    _mark("security")
    if cfg.seccomp_bpf is not None:
        seccomp.install(cfg.seccomp_bpf)  # last: from here on only what the profile allows
    _mark("exec")
    try:
        os.execvpe(cfg.argv[0], list(cfg.argv), dict(cfg.env))
    except OSError as e:
        raise OSError(e.errno, f"cannot execute {cfg.argv[0]} in the container: {e.strerror}") from e


def _own_stdin() -> None:  # pragma: no cover - runs in the child
    """stdin becomes the container's own /dev/null (the node its mount plan made), in place of
    the harness's empty pipe: nothing of the host's /dev is ever one of its fds."""
    try:
        fd = os.open(CONTAINER_NULL, os.O_RDWR | os.O_CLOEXEC)
    except OSError as e:
        raise OSError(e.errno, f"cannot open the container's {CONTAINER_NULL} as stdin: {e.strerror}") from e
    os.dup2(fd, 0)  # (inheritable: dup2's default)
    os.close(fd)


def harden(cfg: InitConfig) -> None:  # pragma: no cover - runs in the child
    """Process attributes, then capabilities and no_new_privs (seccomp is loaded after this).

    Any launcher calls it in the child, after the mounts and the cgroup join."""
    hardening.set_rlimits(cfg.rlimits)
    if cfg.oom_score_adj is not None:
        hardening.set_oom_score_adj(cfg.oom_score_adj)
    if cfg.session_keyring:
        hardening.join_session_keyring()
    caps.restrict(cfg.keep_caps, cfg.last_cap)
    if cfg.user is not None:  # needs CAP_SETGID/CAP_SETUID, both in the kept set
        uid, gid, groups = cfg.user
        os.setgroups(list(groups))
        os.setgid(gid)
        os.setuid(uid)
    caps.no_new_privs()
    signal.pthread_sigmask(signal.SIG_SETMASK, ())
    try:
        os.chdir(cfg.cwd)
    except OSError as e:  # (the bare strerror would not say what was missing)
        raise OSError(e.errno, f"cannot change to the working directory {cfg.cwd}: {e.strerror}") from e


def _arrange_fds(fds: Sequence[int], marker: bool = True) -> None:  # pragma: no cover - runs in the child
    """stdin, stdout, stderr, marker -> 0..3 (inherited; the marker only for a catalog
    workload); status, mount namespace -> 4, 5 (close-on-exec); everything else closed."""
    # lift first: a source may sit on a target number (e.g. the status pipe on fd 3)
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 64) for fd in fds]
    for target, fd in enumerate(high):
        os.dup2(fd, target, inheritable=target < MARKER_FD or (target == MARKER_FD and marker))
    os.closerange(len(fds), os.sysconf("SC_OPEN_MAX"))
