"""Finding and removing what a killed harness left of its containers.

A container is its PID 1 (which takes everything else in its PID namespace
with it when killed), the instance cgroup (removed generically by
``runtimes.cgroups.find_leftovers``), and nothing else on the host: all mounts
live in the container's private mount namespace and no named network
namespace is ever created.  The sweep still checks the host's mount table and
``/run/netns`` so that a bug would be cleaned up and reported, not hidden.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

from runtimes import syscalls as sc
from runtimes.base import PREFIX
from runtimes.container.init import INIT_COMM, INSTANCE_ENV
from runtimes.container.zygote_server import ZYGOTE_COMM

NETNS_DIR = Path("/run/netns")


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return b""


def _status(pid: str) -> dict[str, str]:
    out = {}
    for line in _read(f"/proc/{pid}/status").decode(errors="replace").splitlines():
        k, _, v = line.partition(":")
        out[k] = v.strip()
    return out


def container_inits(run_id: str | None = None) -> list[tuple[int, str]]:
    """(host pid, instance) of every live container PID 1 of ours (of ``run_id``'s, if given).

    Recognised by being PID 1 of a nested PID namespace with ``ISOBENCH_INSTANCE``
    in its environment, or, while still setting up, by its comm ``isobench-init``
    (then only when its harness is gone: it was reparented to PID 1).
    """
    want = f"{INSTANCE_ENV}={PREFIX}-{run_id}-" if run_id else f"{INSTANCE_ENV}={PREFIX}-"
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        st = _status(pid)
        nspid = st.get("NSpid", "").split()
        if st.get("State", "").startswith("Z") or len(nspid) < 2 or nspid[-1] != "1":
            continue
        if st.get("Name") == INIT_COMM:
            if st.get("PPid") == "1":
                found.append((int(pid), INIT_COMM))
            continue
        for var in _read(f"/proc/{pid}/environ").split(b"\0"):
            text = var.decode(errors="replace")
            if text.startswith(want):
                found.append((int(pid), text.partition("=")[2]))
                break
    return found


def orphaned_zygotes() -> list[int]:
    """Zygotes whose harness is gone (reparented to PID 1).  They die with their harness
    (parent-death signal, EOF on their socket), so finding one means that failed."""
    return [int(pid) for pid in os.listdir("/proc") if pid.isdigit()
            and (st := _status(pid)).get("Name") == ZYGOTE_COMM and st.get("PPid") == "1"
            and not st.get("State", "").startswith("Z")]


def _kill(pid: int, timeout: float = 5.0) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # ours: reap it
        if _status(str(pid)).get("State", "Z").startswith("Z"):
            return  # gone, or a zombie waiting for a parent that does not reap: holds nothing
        time.sleep(0.005)


def host_mounts(run_id: str | None = None) -> list[str]:
    """Mount points in the host's mount namespace that mention isobench (and ``run_id``)."""
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        if PREFIX in line and (run_id is None or run_id in line):
            points.append(line.split()[4].replace("\\040", " "))
    return points


def cleanup_leftovers(run_id: str | None = None) -> list[str]:
    """Kill orphaned zygotes and leftover container inits, unmount stray isobench mounts, remove isobench netns.

    Returns one line per thing removed.  Cgroups are left to
    ``runtimes.cgroups.find_leftovers()``/``remove_dir`` (they are empty once the inits are gone).
    """
    removed = []
    for pid in orphaned_zygotes():  # not per run: an orphan serves no run any more
        _kill(pid)
        removed.append(f"process {pid} ({ZYGOTE_COMM} of a harness that is gone)")
    for pid, instance in container_inits(run_id):
        _kill(pid)
        removed.append(f"process {pid} (PID 1 of container {instance})")
    for point in sorted(host_mounts(run_id), key=lambda p: -p.count("/")):
        try:
            sc.umount2(point, sc.MNT_DETACH)
            removed.append(f"mount {point}")
        except OSError as e:
            removed.append(f"mount {point} NOT removed: {e}")
    if NETNS_DIR.is_dir():
        for ns in NETNS_DIR.glob(f"{PREFIX}*"):
            if run_id is not None and run_id not in ns.name:
                continue
            with contextlib.suppress(OSError):
                sc.umount2(ns, sc.MNT_DETACH)
            with contextlib.suppress(OSError):
                ns.unlink()
            removed.append(f"network namespace {ns.name}")
    return removed
