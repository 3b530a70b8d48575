"""The Python zygote's own side: a small Python process that forks container inits on request.

(The default zygote is the native one, ``zygote.c``: the same role and
replies, its requests encoded by ``wire.py`` instead of pickled.  This one runs
with ``zygote = "python"``, and where the C one cannot be built.)

Started by ``zygote.Zygote`` as ``python -I -c … isobench-zygote`` with one end
of a SOCK_SEQPACKET socketpair.  It imports only what the child path needs
(``init`` and what that imports: the same child-side code the fork launcher
runs), then loops over requests (one message each, first byte the kind):

``T`` + pickled (number, mount plan): prepare its shared root (``template.py``) once;
    later requests name the plan by its number (a pickle persistent id);
    answers ``T 1`` (prepared) or ``T 0 <why not>`` (containers run the whole plan);
``L`` + pickled ``InitConfig``, with five fds passed with SCM_RIGHTS (stdin,
    stdout, stderr, marker, status pipe): clone the child; answers
    ``P <pid> <t_fork> <born_in_cgroup> <prepared_root>`` or ``E <message>``.

The child is made with ``clone3(CLONE_PARENT | CLONE_NEWPID)``: PID 1 of a new
PID namespace whose parent is the *harness*, which waits for it as before.  On
cgroup v2 CLONE_INTO_CGROUP puts it straight into its cgroup (no migration);
where the kernel refuses that flag the child joins by itself (``init._join_cgroup``)
and the zygote stops asking.

It dies with the harness: PR_SET_PDEATHSIG (when started from the harness's
main thread) and EOF on the socket (when the harness process ends or closes it).  Nothing here
outlives a request but the zygote itself; it never waits for children (it has none).
"""

from __future__ import annotations

import dataclasses
import errno
import gc
import io
import os
import pickle
import signal
import socket
import sys
import time

from runtimes import syscalls as sc
from runtimes.container.launcher import init, template
from runtimes.container.mounts import MountOp

#: comm of the zygote (15 bytes at most); leftovers sweeps recognise it
ZYGOTE_COMM = "isobench-zygote"
#: fds per request: stdin, stdout, stderr, marker, status write end
REQUEST_FDS = 5
MAX_REQUEST = 1 << 20
#: errors by which a kernel refuses CLONE_INTO_CGROUP itself (older than 5.7, or a v1 fd)
_NO_INTO_CGROUP = (errno.E2BIG, errno.EINVAL, errno.EOPNOTSUPP, errno.EBADF)


class Server:
    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.into_cgroup = True  # until the kernel says otherwise
        #: mount plan -> (fd of its prepared root's namespace, per-container ops); None: run it whole
        self.templates: dict[tuple[MountOp, ...], tuple[int, tuple[MountOp, ...]] | None] = {}
        #: plans by the number the harness gave them (``T`` requests)
        self.plans: dict[int, tuple[MountOp, ...]] = {}

    def serve(self) -> None:
        while True:
            try:
                msg, fds, _, _ = socket.recv_fds(self.sock, MAX_REQUEST, REQUEST_FDS)
            except OSError:
                return
            if not msg:  # the harness closed its end, or died
                return
            try:
                if msg[:1] == b"T":
                    number, plan = pickle.loads(msg[1:])
                    self.plans[number] = plan
                    reply = self.prepare(plan)
                elif msg[:1] == b"L" and len(fds) == REQUEST_FDS:
                    unpickler = pickle.Unpickler(io.BytesIO(msg[1:]))
                    unpickler.persistent_load = self.plans.__getitem__  # type: ignore[method-assign]
                    reply = self.launch(unpickler.load(), fds)
                else:
                    reply = f"E bad request {msg[:1]!r} with {len(fds)} fds"
            except Exception as e:  # noqa: BLE001 - the harness gets every failure as a reply
                reply = "E " + (e.strerror if isinstance(e, OSError) and e.strerror else str(e) or type(e).__name__)
            finally:
                for fd in fds:  # the request's own fds (a template's fd stays)
                    os.close(fd)
            self.sock.send(reply.replace("\n", " ").encode()[:4000])

    def prepare(self, plan: tuple[MountOp, ...]) -> str:
        if plan in self.templates:
            return f"T {int(self.templates[plan] is not None)}"
        halves = template.split(plan)
        if halves is None:
            self.templates[plan] = None
            return "T 0 this plan has a step that runs per container"
        try:
            fd = template.build(halves.shared)
        except OSError as e:
            self.templates[plan] = None
            return f"T 0 {e.strerror or e}"
        self.templates[plan] = (fd, halves.instance)
        return "T 1"

    def launch(self, cfg: init.InitConfig, fds: list[int]) -> str:
        prepared = self.templates.get(cfg.mount_plan)
        if prepared is not None:  # below the shared root, each container runs only its own steps
            cfg = dataclasses.replace(cfg, mount_plan=prepared[1])
            fds = [*fds, prepared[0]]
        cg_fd = -1
        if cfg.cgroup_dir is not None and self.into_cgroup:
            cg_fd = os.open(cfg.cgroup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            t_fork = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
            try:
                pid = sc.clone3(sc.CLONE_PARENT | sc.CLONE_NEWPID, cg_fd)
            except OSError as e:
                if cg_fd < 0 or e.errno not in _NO_INTO_CGROUP:
                    raise
                self.into_cgroup = False  # the child joins by itself from now on
                os.close(cg_fd)
                cg_fd = -1
                pid = sc.clone3(sc.CLONE_PARENT | sc.CLONE_NEWPID)
            if pid == 0:  # pragma: no cover - the child: never returns
                self.sock.close()
                init.child_main(cfg, tuple(fds), born_in_cgroup=cg_fd >= 0, mount_ns=prepared is not None)
        finally:
            if cg_fd >= 0:
                os.close(cg_fd)
        return f"P {pid} {t_fork} {int(cg_fd >= 0)} {int(prepared is not None)}"


def main(fd: int, harness_pid: int, pdeathsig: bool) -> None:
    """``pdeathsig``: the harness started us from its main thread (the signal is tied to the
    parent *thread*: from a worker thread it would fire when that thread ends)."""
    if pdeathsig:
        sc.prctl(sc.PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != harness_pid:  # the harness died before the line above took effect
        sys.exit(1)
    sc.set_name(ZYGOTE_COMM)
    sock = socket.socket(fileno=fd)
    gc.collect()
    gc.freeze()  # what is loaded now is never scanned again: fewer pages copied after each fork
    sock.send(f"R {os.getpid()}".encode())
    Server(sock).serve()
