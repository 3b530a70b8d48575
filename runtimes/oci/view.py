"""Where an OCI runtime's cgroups land: below our own cgroup, in every hierarchy.

runc and crun resolve an *absolute* ``cgroupsPath`` against the root of each
cgroup hierarchy (crun does so for a relative one too).  On a v1 host our own
cgroup differs per hierarchy (here: memory ``/process_api/<id>``, the others
``/``), so no single absolute path lies below it everywhere without creating
foreign intermediate directories (checked: ``/process_api/<id>/isobench-x``
makes runc ``mkdir -p`` a ``process_api/<id>`` in cpu, pids, blkio...).

So each runtime command runs in a private mount namespace (made between fork
and exec, like ``unshare -m``) in which every cgroup mountpoint shows *our own*
cgroup: ``<mount>/<own path>`` is bind-mounted over ``<mount>``.  There the
absolute ``cgroupsPath`` ``/isobench-<run>-<n>`` is
``<mount>/<own path>/isobench-<run>-<n>`` on the host, in every hierarchy: the
directories ``Cgroup.create`` would use, and nothing else is created.  crun
1.8.1 refuses hybrid hosts unless the cgroup2 mount is gone, so for crun that
namespace also unmounts it (HOST-NOTES).  Nothing outside the namespace changes.

Every command for a container (run, delete) must run in the same view: the
runtime's state records cgroup paths as it saw them.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from runtimes import cgroups
from runtimes import syscalls as sc
from runtimes.cgroups import Cgroup, Hierarchy, hierarchies
from runtimes.naming import PREFIX
from runtimes.process import kill_and_reap
from runtimes.wait import wait_until

__all__ = ["Hierarchy", "Holder", "View", "container_cgroup", "hierarchies", "make", "memsw_supported", "run"]


@dataclass(frozen=True)
class View:
    """The mount namespace a runtime command runs in (see the module doc)."""

    #: (source, mountpoint): our own cgroup bound over each hierarchy's mountpoint
    binds: tuple[tuple[str, str], ...]
    #: mountpoints hidden from the runtime (crun on a hybrid host: the cgroup2 one)
    unmounts: tuple[str, ...]
    #: the hierarchies the runtime sees, with host paths
    hierarchies: tuple[Hierarchy, ...]

    def enter(self) -> None:
        """Between fork and exec of the runtime: a private mount namespace with the binds."""
        sc.unshare(sc.CLONE_NEWNS)
        # private first: nothing below may propagate back to the host's namespace
        sc.mount(None, "/", None, sc.MS_REC | sc.MS_PRIVATE)
        for path in self.unmounts:
            sc.umount2(path, sc.MNT_DETACH)
        for src, dst in self.binds:
            sc.mount(src, dst, None, sc.MS_BIND)

    def dirs(self, name: str) -> list[Path]:
        """Host paths of the cgroup ``/<name>`` in every hierarchy the runtime sees."""
        return [h.own / name for h in self.hierarchies]

    def describe(self) -> str:
        binds = ", ".join(f"{s} on {d}" for s, d in self.binds) or "none"
        hidden = ", ".join(self.unmounts) or "none"
        return f"private mount namespace; binds: {binds}; unmounted: {hidden}"


def make(hide_cgroup2_on_hybrid: bool) -> View:
    """The view for this process's cgroups; crun asks to hide the hybrid cgroup2 mount."""
    found = hierarchies()
    if cgroups.version() == 2:
        # where Cgroup.create puts v2 cgroups, after delegating cpu/memory/pids
        # (which may move this process into a leaf: the parent is still right)
        parent = cgroups.parent_dirs(2)[""]
        found = [Hierarchy(h.mountpoint, 2, h.controllers, parent) if h.version == 2 else h for h in found]
    unmounts: list[str] = []
    hybrid = any(h.version == 1 for h in found) and any(h.version == 2 for h in found)
    if hide_cgroup2_on_hybrid and hybrid:
        unmounts = [str(h.mountpoint) for h in found if h.version == 2]
        found = [h for h in found if h.version == 1]
    binds = tuple((str(h.own), str(h.mountpoint)) for h in found if h.own != h.mountpoint)
    return View(binds, tuple(unmounts), tuple(found))


class Holder:
    """A small process that keeps a view's mount namespace for runtime commands to join.

    The runtime is then started with ``nsenter --mount=/proc/<holder>/ns/mnt``
    by ``posix_spawn`` (vfork: ~1 ms) instead of a fork of the harness with a
    Python preexec hook (a fork of a process holding pandas & co. costs ~15 ms
    here), so the peers are not charged for our harness's size.  The holder
    exits when the pipe from the harness closes (``close()``, or the harness
    dying in any way), so it cannot outlive us.
    """

    COMM = f"{PREFIX}-ociview"

    def __init__(self, v: View):
        self.view = v
        ready_r, ready_w = os.pipe()
        life_r, life_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the holder
            code = 0
            try:
                # keep only our two pipe ends: an inherited copy of another holder's
                # life pipe (or any harness fd) would keep that one from ever seeing EOF
                close_other_fds((ready_w, life_r))
                sc.set_name(self.COMM)
                v.enter()
                os.write(ready_w, b"1")
                os.read(life_r, 1)  # EOF when the harness closes it or dies
            except BaseException as e:
                os.write(ready_w, f"E{e}".encode()[:500])
                code = 1
            os._exit(code)
        os.close(ready_w)
        os.close(life_r)
        self.pid: int | None = pid
        self._life = life_w
        try:
            got = os.read(ready_r, 600)
        finally:
            os.close(ready_r)
        if got != b"1":
            self.close()
            raise OSError(0, f"cannot make the runtime's mount namespace: {got[1:].decode(errors='replace')}")

    def alive(self) -> bool:
        if self.pid is None:
            return False
        try:
            done, _ = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            done = self.pid
        if done:
            self.pid = None
        return self.pid is not None

    def nsenter(self, nsenter: str) -> list[str]:
        """The argv prefix that runs a command in the view."""
        if self.pid is None:
            raise OSError(0, "the runtime's mount namespace holder is gone")
        return [nsenter, f"--mount=/proc/{self.pid}/ns/mnt", "--"]

    def close(self, timeout: float = 1.0) -> None:
        """Close the life pipe; the holder exits at EOF (SIGKILL if a stray copy keeps it open)."""
        if self._life >= 0:
            os.close(self._life)
            self._life = -1
        if self.pid is None:
            return
        wait_until(lambda: not self.alive(), timeout, interval=0.005)
        if self.pid is not None:
            kill_and_reap(self.pid)
            self.pid = None


def run(argv: list[str], v: View, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """A runtime command (``delete``) in the view, as the launch ran: its state names cgroups so."""
    return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
                          preexec_fn=v.enter, check=False)


def memsw_supported(v: int) -> bool:
    """Whether the host can limit swap, so the bundle may ask for "no swap" (as Cgroup.apply)."""
    if v == 2:
        parent = cgroups.parent_dirs(2)[""]
        return (parent / "memory.swap.max").exists() or not (parent / "memory.max").exists()
    mem = cgroups.parent_dirs(1)["memory"]
    return (mem / "memory.memsw.limit_in_bytes").exists()


def container_cgroup(name: str, version: int, v: View) -> Cgroup:
    """A ``Cgroup`` over the directories the runtime makes for cgroupsPath ``/<name>``, so
    ``usage()``, ``pids()`` and ``kill()`` work as for our own cgroups."""
    if version == 2:
        unified = next(h for h in v.hierarchies if h.version == 2)
        return Cgroup.wrap(name, {"": unified.own / name})
    by_ctrl = {c: h.own / name for h in v.hierarchies if h.version == 1 for c in h.controllers}
    return Cgroup.wrap(name, {c: by_ctrl[c] for c in cgroups.V1_CONTROLLERS if c in by_ctrl})


def close_other_fds(keep: tuple[int, ...]) -> None:
    """In a helper just forked from the harness: close every descriptor above 2 but ``keep`` (an
    inherited copy of a pipe end of the harness's would keep its reader from seeing EOF)."""
    try:
        fds = [int(fd) for fd in os.listdir("/proc/self/fd")]
    except OSError:
        fds = list(range(3, 1024))
    for fd in fds:
        if fd > 2 and fd not in keep:
            with contextlib.suppress(OSError):
                os.close(fd)
