"""Where an image instance's thin writable layer lives, and the read-only tree of bare/unshare.

Per run, one directory ``<cache>/run/isobench-<run_id>/`` (on the image store's filesystem, as
an engine keeps its containers' layers beside its images); in it, per instance,
``<instance>/{upper,work,root}``: the overlay's upper and work directories and the empty
directory the overlay is mounted on.  Nothing is ever copied from a layer: the instance's
writes land in its ``upper``; the directory is removed at the instance's cleanup.  Making a
run's directory claims the run (``runtimes.owners``), so ``isobench cleanup`` spares the
directories of live runs and removes the rest (``cleanup_leftovers``), unmounting whatever
is still mounted below them first.

``Tree`` is the image's merged tree, mounted read-only once per run and image on the host
for ``bare`` (chroot only) and ``unshare`` (unshare(1) with ``--root``): no upper, no
instance directory, so those two add nothing to the instance's own start.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from runtimes import owners
from runtimes import syscalls as sc
from runtimes.image.model import Image
from runtimes.naming import PREFIX, check_run_id
from runtimes.rootfs import cache_dir

#: the directories every backend mounts something on (or a program expects), with their modes:
#: made in each instance's own upper layer when the image lacks them, never in a layer
MOUNTPOINTS = {"proc": 0o555, "dev": 0o755, "sys": 0o555, "tmp": 0o1777}
#: the kernel reads mount options from one page: a longer lowerdir= cannot be mounted
MAX_MOUNT_DATA = 4095
#: every overlay of an image: its setuid bits and device nodes stay without effect
OVERLAY_FLAGS = sc.MS_NOSUID | sc.MS_NODEV


def runs_root() -> Path:
    return cache_dir() / "run"


def run_dir(run_id: str) -> Path:
    """This run's directory (made on first use, the run claimed first: nothing is mounted below it
    before ``isobench cleanup`` knows the run is live)."""
    owners.claim(check_run_id(run_id))
    d = runs_root() / f"{PREFIX}-{run_id}"
    d.mkdir(parents=True, exist_ok=True, mode=0o711)
    return d


def release_run_dir(run_id: str) -> None:
    """Remove this run's directory once it is empty."""
    with contextlib.suppress(OSError):
        (runs_root() / f"{PREFIX}-{run_id}").rmdir()


class Runs:
    """The run directories a backend used: released (removed once empty) when it closes."""

    def __init__(self) -> None:
        self._ids: set[str] = set()

    def enter(self, run_id: str) -> Path:
        """The run's directory (made now, before any t_launch, on the first call)."""
        self._ids.add(run_id)
        return run_dir(run_id)

    def release(self) -> None:
        while self._ids:
            release_run_dir(self._ids.pop())


def overlay_data(lowerdir: str, upper: Path | None = None, work: Path | None = None) -> str:
    """The overlay's mount options; ValueError when they do not fit the kernel's page."""
    data = f"lowerdir={lowerdir}" + (f",upperdir={upper},workdir={work}" if upper is not None else "")
    if len(data.encode()) > MAX_MOUNT_DATA:
        raise ValueError(f"the image's {lowerdir.count(':') + 1} layer paths make {len(data)} bytes of overlay "
                         f"options, more than the kernel's {MAX_MOUNT_DATA}")
    return data


@dataclass(frozen=True)
class Upper:
    """One instance's writable layer: ``upper`` and ``work`` of its overlay, mounted on ``root``."""

    dir: Path

    @property
    def upper(self) -> Path:
        return self.dir / "upper"

    @property
    def work(self) -> Path:
        return self.dir / "work"

    @property
    def root(self) -> Path:
        return self.dir / "root"

    @classmethod
    def create(cls, run_id: str, instance: str, mountpoints: Iterable[str] = ()) -> Upper:
        """The instance's directories (it must not have any yet), with ``mountpoints`` the image
        lacks made in its upper, so they exist in the merged root without touching a layer."""
        if PREFIX not in instance or "/" in instance:
            raise ValueError(f"instance name {instance!r} must contain {PREFIX!r} and no '/'")
        u = cls(run_dir(run_id) / instance)
        u.dir.mkdir(mode=0o700)
        try:
            for d in (u.upper, u.work, u.root):
                d.mkdir(mode=0o755)
            make_mountpoints(u.upper, mountpoints)
        except BaseException:
            u.remove()
            raise
        return u

    def data(self, image: Image) -> str:
        return overlay_data(image.lowerdir(), self.upper, self.work)

    def remove(self) -> None:
        """Remove the instance's directories (its overlay must be unmounted by then)."""
        remove_tree(self.dir)


def make_mountpoints(where: Path, mountpoints: Iterable[str]) -> None:
    """The empty directories an image lacks (``ImageWorkload.missing_mountpoints``), with their modes."""
    for m in mountpoints:
        (where / m).mkdir()
        os.chmod(where / m, MOUNTPOINTS.get(m, 0o755))  # not narrowed by the umask (/tmp is 1777)


def remove_tree(d: Path) -> None:
    """``rm -rf d``; OSError when something stays (a busy mount below it)."""
    shutil.rmtree(d, ignore_errors=True)
    if d.exists():
        raise OSError(errno.EBUSY, f"cannot remove {d} (still mounted?)")


class Tree:
    """An image's merged tree, read-only, mounted on the host (bare and unshare enter it)."""

    def __init__(self, run_id: str, image: Image, mountpoints: Iterable[str], owner: str):
        self.image = image
        self.dir = run_dir(run_id) / f"tree-{owner}-{image.digest.split(':')[-1][:16]}"
        self.root = self.dir / "root"
        self.mounted = False
        self.dir.mkdir(mode=0o755)
        try:
            # the mountpoints the image lacks, as one more (top) read-only layer of empty directories
            top = self.dir / "mountpoints"
            top.mkdir(mode=0o755)
            make_mountpoints(top, mountpoints)
            self.root.mkdir(mode=0o755)
            sc.mount("overlay", self.root, "overlay", OVERLAY_FLAGS | sc.MS_RDONLY,
                     overlay_data(f"{top}:{image.lowerdir()}"))
            self.mounted = True
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Unmount and remove; idempotent (a tree ``isobench cleanup`` already unmounted is fine)."""
        if self.mounted:
            with contextlib.suppress(OSError):
                sc.umount2(self.root, sc.MNT_DETACH)
            self.mounted = False
        if self.dir.exists():
            remove_tree(self.dir)


def _mounts_below(d: Path) -> list[str]:
    prefix = str(d) + "/"
    found = []
    with contextlib.suppress(OSError), open("/proc/self/mountinfo") as f:
        for line in f:
            target = line.split()[4].replace("\\040", " ")
            if target.startswith(prefix):
                found.append(target)
    return sorted(found, key=len, reverse=True)  # deepest first


def cleanup_leftovers(run_id: str | None = None) -> list[str]:
    """Unmount and remove the run directories of dead runs (of ``run_id`` only, if given)."""
    removed: list[str] = []
    live = owners.live()
    with contextlib.suppress(FileNotFoundError):
        for d in sorted(runs_root().iterdir()):
            if not d.name.startswith(f"{PREFIX}-") or (run_id and d.name != f"{PREFIX}-{run_id}"):
                continue
            if live.owns(d.name):
                continue
            for target in _mounts_below(d):
                with contextlib.suppress(OSError):
                    sc.umount2(target, sc.MNT_DETACH)
                    removed.append(f"mount {target}")
            with contextlib.suppress(OSError):
                remove_tree(d)
                removed.append(f"image run directory {d}")
    return removed
