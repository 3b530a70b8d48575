"""An image's layers shared with a guest over virtio-fs: one virtiofsd per guest (``image_root =
"virtiofs"``).

The other way to give a guest an image's layers (``runtimes.vm.layers`` packs each into an
erofs disk).  Here the guest mounts the image store's own layer directories, read-only, through
QEMU's virtiofsd (``/usr/lib/qemu/virtiofsd``, Debian's qemu-system-common), and stacks them
with overlayfs as the host does: no copy of any layer exists, and the layers' file pages in the
host's page cache are the ones a container on the same host reads.  The guest still keeps its
own page cache of what it reads (QEMU 7.2 has no DAX window for virtio-fs), so a file page is
cached once on the host and once per guest.

The share is the directory that holds the image's layers (the store's ``layers/sha256``): the
guest's kernel can read every layer of the store, never write one (mounted ``ro``), and the app
sees only its own image's layers through the overlay.  virtiofsd reads the layers' overlayfs
xattrs (``trusted.overlay.opaque``) for the guest, which needs CAP_SYS_ADMIN (``modcaps``).

For ``qemu`` the harness starts virtiofsd (``Daemon``) after ``t_launch``, in the guest's own
cgroup, so its start is part of the guest's startup and its memory part of the guest's; libvirt
(``vm``) starts its own from the domain's ``<filesystem>`` (``runtimes.vm.domain``), through a
two-line wrapper that adds ``modcaps`` (``libvirt_binary``).  Its
socket is ``/run/isobench-vm/<instance>.sock``: ``cleanup_leftovers`` kills a dead harness's
daemons by that path and removes the sockets.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import psutil

from runtimes import owners
from runtimes.base import PREFIX, BackendError, now_ns
from runtimes.cgroups import join_self
from runtimes.image.model import Image
from runtimes.vm.image_init import FS_TAG
from runtimes.vm.machine import VIRTIOFSD, SharedDir

SOCKET_DIR = Path(f"/run/{PREFIX}-vm")
#: how long virtiofsd may take to create its socket (it does so at once; a loaded TCG host is slow)
START_TIMEOUT_S = 10.0
KILL_TIMEOUT_S = 10.0
#: xattr: the layers' overlayfs xattrs reach the guest; modcaps: reading trusted.* needs CAP_SYS_ADMIN
OPTIONS = ("-o", "cache=auto", "-o", "xattr", "-o", "modcaps=+sys_admin")


def share_for(image: Image, instance: str) -> SharedDir:
    """The share of ``image``'s layers for guest ``instance``: the directory that holds them."""
    source = os.path.commonpath([str(p.parent) for p in image.layers])
    return SharedDir(socket=str(SOCKET_DIR / f"{instance}.sock"), tag=FS_TAG, source=source)


def argv(share: SharedDir) -> list[str]:
    return [VIRTIOFSD, f"--socket-path={share.socket}", "-o", f"source={share.source}", *OPTIONS]


class Daemon:
    """The virtiofsd of one guest: started into the guest's cgroup, killed with the guest."""

    def __init__(self, share: SharedDir, procs_files: Sequence[str], log: IO[bytes] | None = None):
        self.share = share
        self.procs_files = list(procs_files)
        self.log = log  # opened by the caller before t_launch (its path says nothing here)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> int:
        """Start it and wait for its socket; returns how long that took (ns)."""
        if not os.access(VIRTIOFSD, os.X_OK):
            raise BackendError(f"image_root = \"virtiofs\" needs {VIRTIOFSD} (fix: apt-get install qemu-system-common)")
        SOCKET_DIR.mkdir(mode=0o700, exist_ok=True)
        Path(self.share.socket).unlink(missing_ok=True)
        t0 = now_ns()
        out = self.log if self.log is not None else subprocess.DEVNULL
        self.proc = subprocess.Popen(argv(self.share), stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                     preexec_fn=functools.partial(join_self, self.procs_files),  # as QEMU
                                     start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not os.path.exists(self.share.socket):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise BackendError(f"virtiofsd did not start (exit {self.proc.returncode}; see its log)")
            time.sleep(0.001)
        return now_ns() - t0

    def pids(self) -> list[int]:
        return [self.proc.pid] if self.proc is not None and self.proc.poll() is None else []

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(KILL_TIMEOUT_S)
        Path(self.share.socket).unlink(missing_ok=True)


def libvirt_binary(cache_dir: Path) -> str:
    """What libvirt's ``<binary path>`` runs: virtiofsd with this module's ``modcaps`` (libvirt
    9 has no element for it, and the layers' ``trusted.overlay.opaque`` is unreadable without
    it), written once under ``cache_dir`` and named by its content."""
    script = f"#!/bin/sh\n# written by isobench (runtimes/vm/virtiofs.py)\nexec {VIRTIOFSD} -o modcaps=+sys_admin \"$@\"\n"
    path = cache_dir / f"virtiofsd-{hashlib.sha256(script.encode()).hexdigest()[:12]}"
    if not path.exists():
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(script)
        tmp.chmod(0o755)
        os.replace(tmp, path)
    return str(path)


def libvirt_daemons(domain_id: int) -> list[int]:
    """The virtiofsd processes libvirt started for the running domain ``domain_id``: its pid files
    are named by the domain's short name, ``<id>-<name, cut at 20 characters>-<alias>-fs.pid``."""
    pids = []
    for pidfile in Path("/run/libvirt/qemu").glob(f"{domain_id}-*-fs.pid"):
        with contextlib.suppress(OSError, ValueError):
            pids.append(int(pidfile.read_text().strip()))
    return [p for p in pids if psutil.pid_exists(p)]


def cleanup_leftovers(run_id: str | None = None) -> list[str]:
    """Kill the virtiofsd a dead harness left and remove their sockets (the socket names the
    instance; a live run's are not leftovers)."""
    live = owners.live()
    prefix = f"{PREFIX}-{run_id}-" if run_id else f"{PREFIX}-"
    removed = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = p.info["cmdline"] or []
        sockets = [Path(a.partition("=")[2]) for a in cmd if a.startswith("--socket-path=")]
        if cmd[:1] == [VIRTIOFSD] and sockets and sockets[0].parent == SOCKET_DIR and _dead(sockets[0], prefix, live):
            with contextlib.suppress(psutil.Error):
                p.kill()
                removed.append(f"virtiofsd {sockets[0].stem} (pid {p.pid})")
    if SOCKET_DIR.is_dir():
        for sock in SOCKET_DIR.glob("*.sock"):
            if _dead(sock, prefix, live):
                sock.unlink(missing_ok=True)
    return removed


def _dead(socket: Path, prefix: str, live: owners.Live) -> bool:
    return socket.stem.startswith(prefix) and not live.owns(socket.stem)
