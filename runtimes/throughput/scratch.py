"""The host directory a throughput sample's storage benchmarks write to, and its sweep.

One directory per sample, on the cache's filesystem (a disk, never a tmpfs: it stands for
"a bare host directory"): ``<cache>/throughput/isobench-<run id>-<owner>-<n>/``.  Bare and
unshare use it as it is; the containers get it as a volume (``extra["volume"]``, at /mnt);
a guest gets one raw file in it per instance as its virtio-blk disk.  A marker file in it
(``MARKER``) lets the instance's script find which of these it was given.  The owner part
(``runtimes.owners``) lets ``isobench cleanup`` remove what a killed harness left and nothing of
a live run's.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
from pathlib import Path

from runtimes import owners
from runtimes.naming import PREFIX, of_run
from runtimes.rootfs import cache_dir

#: the file whose presence tells the instance's script where its storage target is
MARKER = ".isobench-volume"
_counter = itertools.count()


def root() -> Path:
    return cache_dir() / "throughput"


class Scratch:
    """One sample's directory (a context manager: removed, with everything in it, on exit)."""

    def __init__(self, run_id: str):
        owners.claim(run_id)
        self.path = root() / f"{PREFIX}-{run_id}-{owners.me().tag()}-{next(_counter)}"
        self.path.mkdir(parents=True, mode=0o755)
        os.chmod(root(), 0o755)  # a guest's QEMU (libvirt-qemu) opens its disk in here
        (self.path / MARKER).write_text(f"{self.path}\n")

    def disk(self, index: int, size_mib: int) -> Path:
        """A raw disk image of ``size_mib`` for guest ``index`` (sparse: fio writes what it uses)."""
        path = self.path / f"disk-{index}.raw"
        with open(path, "wb") as f:
            f.truncate(size_mib << 20)
        os.chmod(path, 0o666)  # QEMU runs unprivileged under libvirt
        return path

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

    def __enter__(self) -> Scratch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


def sweep(run_id: str | None = None) -> list[str]:
    """Remove the sample directories of dead harnesses (of ``run_id`` only, if given)."""
    live = owners.live()
    removed = []
    with contextlib.suppress(FileNotFoundError):
        for d in sorted(root().iterdir()):
            if not d.name.startswith(f"{PREFIX}-") or (run_id is not None and not of_run(d.name, run_id)):
                continue
            if live.owns(d.name):
                continue
            shutil.rmtree(d, ignore_errors=True)
            removed.append(f"throughput scratch directory {d}")
    return removed
