"""A cgroup directory and everything below it: its processes, kill, remove deepest-first.

A workload may make cgroups of its own below the one we gave it (a container
manager, a nested runtime): a directory with children cannot be removed, so
every operation here covers the whole sub-tree.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
from pathlib import Path

from runtimes.cgroups.files import CgroupError, read_pids
from runtimes.wait import wait_until

#: how long a SIGKILLed cgroup may take to empty, and an emptied one to become removable
GONE_TIMEOUT_S = 5.0


def subtree(d: Path) -> list[Path]:
    """``d`` and every cgroup below it, deepest first; [] when ``d`` is gone.  os.walk, unlike
    Path.rglob, shrugs off a directory that is removed while the walk is under way."""
    if not d.is_dir():
        return []
    return [Path(top) for top, _, _ in os.walk(d, topdown=False)]


def pids(dirs: list[Path]) -> list[int]:
    """Every process in these cgroups and below them."""
    found: set[int] = set()
    for d in dirs:
        for sub in subtree(d):
            found.update(read_pids(sub / "cgroup.procs"))
    return sorted(found)


def kill(dirs: list[Path], what: str, timeout: float = GONE_TIMEOUT_S) -> None:
    """SIGKILL everything in ``dirs`` and below, and wait until it is gone.

    v2 directories have ``cgroup.kill``, which kills the whole sub-tree at once,
    also processes forked while we read the list; v1 gets a SIGKILL per PID,
    repeated until nothing is left."""
    survivors: list[int] = []

    def gone() -> bool:
        survivors[:] = pids(dirs)
        if not survivors:
            return True
        if not all(_write_kill(d) for d in dirs):
            for p in survivors:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p, signal.SIGKILL)
        return False

    if not wait_until(gone, timeout, interval=0.002):
        raise CgroupError(f"processes {survivors} in {what} survive SIGKILL")


def _write_kill(d: Path) -> bool:
    """``cgroup.kill`` (v2, Linux 5.14+); False where there is none (v1) or it failed."""
    kill_file = d / "cgroup.kill"
    try:
        if not kill_file.exists():
            return False
        kill_file.write_text("1")
    except OSError:
        return False
    return True


def rmdir(d: Path, timeout: float = GONE_TIMEOUT_S) -> None:
    """Remove one (empty) cgroup directory; EBUSY is retried while its last task is torn down."""

    def removed() -> bool:
        try:
            os.rmdir(d)
        except FileNotFoundError:
            pass
        except OSError as e:
            if e.errno != errno.EBUSY:
                raise CgroupError(f"cannot remove cgroup {d}: {e.strerror}") from e
            return False
        return True

    if not wait_until(removed, timeout, interval=0.002):
        raise CgroupError(f"cannot remove cgroup {d}: {os.strerror(errno.EBUSY)}")


def remove(dirs: list[Path], what: str) -> None:
    """Kill what is in ``dirs`` (and below), then remove every directory, deepest first."""
    existing = [d for d in dirs if d.is_dir()]
    if not existing:
        return
    kill(existing, what)
    for d in existing:
        for sub in subtree(d):
            rmdir(sub)
