"""Mounting an image instance's overlay where the OCI runtime will look for it: in the view.

runc and crun run in the cgroup view's private mount namespace (``view.Holder``), which was
copied from the host's when the holder started and receives no mount made on the host since.
So the engine's step -- mount the image's layers and the instance's upper as the bundle's
root, then start the runtime -- happens there: a small helper process (forked once per
backend, before any ``t_launch``) ``setns``-es into the holder's mount namespace and mounts
and unmounts overlays on request.  Nothing appears in the host's mount table, and every
overlay it mounted goes with the holder's namespace when the backend closes or the harness
dies.  (A thread cannot ``setns`` into a mount namespace: threads share their filesystem
context; a process can.)

Protocol on a SOCK_SEQPACKET pair: ``M<target>\\0<options>`` mounts an overlay
(``nosuid,nodev``) on target, ``U<target>`` detaches it; the answer is ``ok`` or ``E<why>``.
The helper exits at EOF (the backend closed, or the harness died).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
from collections.abc import Iterator

from runtimes import syscalls as sc
from runtimes.base import BackendError, LaunchSpec, Timestamps, now_ns
from runtimes.image.rundir import OVERLAY_FLAGS, Runs, Upper
from runtimes.image.workload import ImageWorkload
from runtimes.naming import PREFIX
from runtimes.oci.view import close_other_fds
from runtimes.process import kill_and_reap, reaped, undone_on_failure
from runtimes.wait import wait_until

COMM = f"{PREFIX}-ocimount"
TIMEOUT_S = 30.0


class Mounter:
    """The helper in the holder's mount namespace; thread-safe (one request at a time)."""

    def __init__(self, holder_pid: int):
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ns = os.open(f"/proc/{holder_pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
        try:
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the helper
                code = 0
                try:
                    mine.close()
                    _serve(theirs, ns)
                except BaseException:  # noqa: BLE001 - the harness sees EOF and says so
                    code = 1
                os._exit(code)
        finally:
            os.close(ns)
            theirs.close()
        self.pid: int | None = pid
        self.holder = holder_pid
        self._sock = mine
        self._sock.settimeout(TIMEOUT_S)
        self._lock = threading.Lock()
        self._ask(b"P")  # ready (in the namespace) before anything is asked of it

    def _ask(self, request: bytes) -> None:
        with self._lock:
            try:
                self._sock.send(request)
                reply = self._sock.recv(4096)
            except OSError as e:
                raise OSError(e.errno or 0, f"the OCI mount helper did not answer: {e}") from e
        if reply != b"ok":
            raise OSError(0, reply[1:].decode(errors="replace") if reply else "the OCI mount helper is gone")

    def mount(self, target: str, options: str) -> None:
        self._ask(b"M" + os.fsencode(target) + b"\0" + options.encode())

    def umount(self, target: str) -> None:
        self._ask(b"U" + os.fsencode(target))

    def alive(self) -> bool:
        if self.pid is not None and reaped(self.pid):
            self.pid = None
        return self.pid is not None

    def close(self, timeout: float = 1.0) -> None:
        """EOF ends the helper (SIGKILL if it lingers); idempotent."""
        self._sock.close()
        wait_until(lambda: not self.alive(), timeout, interval=0.005)
        if self.pid is not None:
            kill_and_reap(self.pid)
            self.pid = None


class ImageRoots:
    """What an OCI backend keeps for its image instances: the helper (for its current holder)
    and the run directories of their layers; ``close()`` with the backend."""

    def __init__(self) -> None:
        self.helper: Mounter | None = None
        self.runs = Runs()

    def prepare(self, holder: int | None, run_id: str) -> Mounter:
        """Before ``t_launch``: the run's directory and the helper in ``holder``'s namespace."""
        self.runs.enter(run_id)
        self.helper = for_holder(self.helper, holder)
        return self.helper

    def close(self) -> None:
        if self.helper is not None:
            self.helper.close()
            self.helper = None
        self.runs.release()


def for_holder(current: Mounter | None, holder: int | None) -> Mounter:
    """The helper for ``holder``'s namespace: ``current`` if it serves it, else a new one."""
    if current is not None and current.holder == holder and current.alive():
        return current
    if current is not None:
        current.close()
    if holder is None:
        raise BackendError("the runtime's mount namespace holder is gone")
    return Mounter(holder)


@contextlib.contextmanager
def released_on_failure(mounter: Mounter | None, upper: Upper | None) -> Iterator[None]:
    """Around what follows ``instance_root``: on any failure, the root is released again."""
    try:
        yield
    except BaseException:
        if upper is not None:
            release_root(mounter, upper)
        raise


def instance_root(mounter: Mounter, spec: LaunchSpec, times: Timestamps) -> Upper:
    """An image instance's own upper, its overlay mounted in the view (phase ``rootfs``): the
    bundle's root.  Nothing is left behind when this fails."""
    t0 = now_ns()
    workload = spec.workload
    assert isinstance(workload, ImageWorkload)
    upper = Upper.create(spec.run_id, spec.instance, workload.missing_mountpoints())
    with undone_on_failure(upper.remove, f"{spec.instance}: cannot mount the image's root", (OSError, ValueError)):
        mounter.mount(str(upper.root), upper.data(workload.image))
    times.phases["rootfs"] = now_ns() - t0
    return upper


def release_root(mounter: Mounter | None, upper: Upper | None) -> None:
    """Unmount an instance's root (the runtime's container is gone) and remove its upper (if any)."""
    if upper is None:
        return
    try:
        if mounter is not None and mounter.alive():
            mounter.umount(str(upper.root))
    finally:  # a helper that died took its namespace, and the mount, with it
        upper.remove()


def _serve(sock: socket.socket, ns: int) -> None:  # pragma: no cover - runs in the helper
    """The helper: into the holder's mount namespace, then one request at a time until EOF."""
    sc.prctl(sc.PR_SET_PDEATHSIG, signal.SIGKILL)
    sc.set_name(COMM)
    close_other_fds((sock.fileno(), ns))
    sc.setns(ns, sc.CLONE_NEWNS)
    os.close(ns)
    while request := sock.recv(65536):
        kind, body = request[:1], request[1:]
        try:
            if kind == b"M":
                target, _, options = body.partition(b"\0")
                sc.mount("overlay", os.fsdecode(target), "overlay", OVERLAY_FLAGS, options.decode())
            elif kind == b"U":
                sc.umount2(os.fsdecode(body), sc.MNT_DETACH)
            reply = b"ok"
        except OSError as e:
            reply = b"E" + str(e).encode()[:2000]
        sock.send(reply)

