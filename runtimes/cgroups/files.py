"""Reading and writing cgroup control files, v1 and v2 alike."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path


class CgroupError(RuntimeError):
    """A cgroup could not be made or configured; the message says why and how to fix it."""


def write(path: Path, value: str) -> None:
    try:
        path.write_text(value)
    except OSError as e:
        raise CgroupError(f"cannot write {value!r} to {path}: {e.strerror}") from e


def join_self(procs_files: Sequence[str]) -> None:
    """Move the calling process into the cgroups of these ``cgroup.procs`` files (paths made
    before the fork): for a child between fork and exec (``preexec_fn``), so that the program and
    everything it starts are born inside, counted and limited.  Plain system calls: nothing of
    the parent's Python state (locks, the logging machinery) is touched in the child."""
    pid = str(os.getpid()).encode()
    for f in procs_files:
        fd = os.open(f, os.O_WRONLY)
        try:
            os.write(fd, pid)
        finally:
            os.close(fd)


def parse_kv(text: str) -> dict[str, int]:
    """``key value`` lines (cpu.stat, memory.events, memory.oom_control...) with integer values."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            out[parts[0]] = int(parts[1])
    return out


def read_kv(path: Path) -> dict[str, int]:
    """``parse_kv`` of a file; {} when it cannot be read (a controller that is not there)."""
    with contextlib.suppress(OSError):
        return parse_kv(path.read_text())
    return {}


def read_int(path: Path) -> int | None:
    """A one-number file; None when it cannot be read or says "max"."""
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return None if text == "max" else int(text)


def read_pids(procs: Path) -> list[int]:
    """The PIDs in one ``cgroup.procs``; [] once the directory is gone."""
    with contextlib.suppress(OSError):
        return [int(p) for p in procs.read_text().split()]
    return []
