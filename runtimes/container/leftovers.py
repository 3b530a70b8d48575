"""Finding and removing what a killed harness left of its containers.

A container is its PID 1 (which takes everything else in its PID namespace
with it when killed), the instance cgroup (removed generically by
``runtimes.cgroups.find_leftovers``), on v1 the devices cgroup its backend's
containers share (named after the harness's pid: removed here once that
process is gone, whatever the run), and nothing else on the host: all mounts
live in the container's private mount namespace and no named network
namespace is ever created.  The sweep still checks the host's mount table and
``/run/netns`` so that a bug would be cleaned up and reported, not hidden.

Nothing of a live run is touched (``runtimes.owners``): a container whose run has a live
owner is that run's, not a leftover, and the devices cgroup is removed only once the
process named in it (pid and start time) is gone.  Mounts are ours only at isobench's own
mount points (``MOUNT_ROOTS``), never because "isobench" appears somewhere in a mount's line.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
from pathlib import Path

import psutil

from runtimes import cgroups, owners, rootfs
from runtimes import syscalls as sc
from runtimes.base import PREFIX
from runtimes.container.devices.rules import shared_owner
from runtimes.container.launcher.init import INIT_COMM, INSTANCE_ENV
from runtimes.container.launcher.zygote_server import ZYGOTE_COMM
from runtimes.naming import of_run
from runtimes.wait import wait_until

NETNS_DIR = Path("/run/netns")
#: the host directories isobench ever mounts on: its state under /run, named network
#: namespaces, and its cache (image roots); a mount point there whose path names an isobench
#: object is ours
MOUNT_ROOTS = (Path(f"/run/{PREFIX}"), Path(f"/run/{PREFIX}-oci"), NETNS_DIR, rootfs.cache_dir())


def _nested_pid_1(pid: int) -> bool:
    """PID 1 of a PID namespace below ours: the last ``NSpid`` of its status is 1.
    (The one field psutil does not expose; read for the few candidates only.)"""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("NSpid:"):
                    nspid = line.split()[1:]
                    return len(nspid) >= 2 and nspid[-1] == "1"
    except OSError:
        pass
    return False


def container_inits(run_id: str | None = None, live: owners.Live | None = None) -> list[tuple[int, str]]:
    """(host pid, instance) of every container PID 1 of ours (of ``run_id``'s, if given) whose
    run has no live owner (``live``: read now when not given).

    Recognised by being PID 1 of a nested PID namespace with ``ISOBENCH_INSTANCE``
    in its environment, or, while still setting up, by its comm ``isobench-init``
    (then only when its harness is gone: it was reparented to PID 1).
    """
    live = owners.live() if live is None else live
    found = []
    for p in psutil.process_iter(["name", "ppid", "status", "environ"]):
        info = p.info
        if p.pid == os.getpid() or info["status"] == psutil.STATUS_ZOMBIE:
            continue
        if info["name"] == INIT_COMM:
            if info["ppid"] == 1 and _nested_pid_1(p.pid):
                found.append((p.pid, INIT_COMM))
            continue
        instance = (info["environ"] or {}).get(INSTANCE_ENV, "")
        if not instance.startswith(f"{PREFIX}-") or (run_id is not None and not of_run(instance, run_id)):
            continue
        if not live.owns(instance) and _nested_pid_1(p.pid):
            found.append((p.pid, instance))
    return found


def orphaned_zygotes() -> list[int]:
    """Zygotes whose harness is gone (reparented to PID 1).  They die with their harness
    (parent-death signal, EOF on their socket), so finding one means that failed."""
    return [p.pid for p in psutil.process_iter(["name", "ppid", "status"])
            if p.info["name"] == ZYGOTE_COMM and p.info["ppid"] == 1
            and p.info["status"] != psutil.STATUS_ZOMBIE]


def _gone(pid: int) -> bool:
    """Gone, or a zombie waiting for a parent that does not reap: it holds nothing."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # ours: reap it
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _kill(pid: int, timeout: float = 5.0) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    wait_until(lambda: _gone(pid), timeout, interval=0.005)


def unescape(field: bytes) -> bytes:
    """A mountinfo field as the path it names: the kernel writes space, tab, newline and
    backslash (and nothing else) as ``\\NNN`` octal escapes (fs/proc_namespace.c, mangle())."""
    return re.sub(rb"\\([0-7]{3})", lambda m: bytes([int(m[1], 8) & 0xFF]), field)


def mount_points(mountinfo: bytes) -> list[str]:
    """Every mount point of a mountinfo text, decoded."""
    return [os.fsdecode(unescape(line.split(b" ")[4])) for line in mountinfo.splitlines() if line.count(b" ") >= 4]


def ours(point: str, run_id: str | None = None, live: owners.Live | None = None) -> bool:
    """A mount point isobench makes (below ``MOUNT_ROOTS``, an isobench object's name in its
    path there), of ``run_id`` if given, and of no live run."""
    path = Path(point)
    for root in MOUNT_ROOTS:
        if path == root or root not in path.parents:
            continue
        names = [p for p in path.relative_to(root).parts if p.startswith(f"{PREFIX}-")]
        if not names or (run_id is not None and not any(of_run(n, run_id) for n in names)):
            return False
        return live is None or not live.owns_path(tuple(names))
    return False


def host_mounts(run_id: str | None = None, live: owners.Live | None = None) -> list[str]:
    """isobench's own mount points in the host's mount namespace (of ``run_id``, if given)
    that no live run holds."""
    live = owners.live() if live is None else live
    return [p for p in mount_points(Path("/proc/self/mountinfo").read_bytes()) if ours(p, run_id, live)]


def cleanup_leftovers(run_id: str | None = None) -> list[str]:
    """Kill orphaned zygotes and leftover container inits, unmount stray isobench mounts, remove isobench netns.

    Returns one line per thing removed.  Cgroups are left to
    ``runtimes.cgroups.find_leftovers()``/``remove_dir`` (they are empty once the inits are gone).
    """
    removed = []
    live = owners.live()
    for pid in orphaned_zygotes():  # not per run: an orphan serves no run any more
        _kill(pid)
        removed.append(f"process {pid} ({ZYGOTE_COMM} of a harness that is gone)")
    for pid, instance in container_inits(run_id, live):
        _kill(pid)
        removed.append(f"process {pid} (PID 1 of container {instance})")
    for d in cgroups.find_leftovers():  # not per run either: a backend's devices cgroup (v1) once its harness died
        owner = shared_owner(d.name)
        if owner is not None and not owner.alive():
            cgroups.remove_dir(d)
            removed.append(f"cgroup {d} (the devices cgroup of harness {owner.pid}, which is gone)")
    for point in sorted(host_mounts(run_id, live), key=lambda p: -p.count("/")):
        try:
            sc.umount2(point, sc.MNT_DETACH)
            removed.append(f"mount {point}")
        except OSError as e:
            removed.append(f"mount {point} NOT removed: {e}")
    if NETNS_DIR.is_dir():
        for ns in NETNS_DIR.glob(f"{PREFIX}-*"):
            if (run_id is not None and not of_run(ns.name, run_id)) or live.owns(ns.name):
                continue
            with contextlib.suppress(OSError):
                sc.umount2(ns, sc.MNT_DETACH)
            with contextlib.suppress(OSError):
                ns.unlink()
            removed.append(f"network namespace {ns.name}")
    return removed
