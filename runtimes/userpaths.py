"""Paths a user names on the command line or in a scenario: hostile input, checked before use.

Two rules, both applied before anything is created:

- a file isobench *reads* (a scenario, a baseline, a seccomp profile, a benchmark JSON, a
  manifest) must be a regular file of bounded size (``read_regular``): ``/dev/zero`` or a FIFO
  would hang the command, a directory or a device is no input, and a 10 GiB "scenario" is a
  mistake;
- a directory isobench *writes* (results, a report, a page) must be one it can create and write
  (``check_output_dir``), asked by making and removing a probe directory where the first missing
  piece would go: permissions, a read-only or pseudo file system (``/proc``), a file in the way
  and a full inode table each give one line before any work is done, not a traceback after it.

Where a *name* becomes part of a path (a run id, an instance, an image name) it is checked as
a name, never as a path: ``runtimes.naming``, ``runtimes.image.names``.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path

from runtimes.naming import PREFIX

#: the largest text input a command reads whole (scenarios, baselines, profiles, manifests)
TEXT_LIMIT = 64 << 20

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


class PathRefused(ValueError):
    """A path named by the user that cannot serve; str() is the one line to show."""


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def open_regular(path: str | os.PathLike[str], limit: int = TEXT_LIMIT) -> int:
    """An fd of ``path`` opened for reading, if it is a regular file of at most ``limit`` bytes;
    else ``OSError`` whose ``strerror`` says why (opened non-blocking, so a FIFO cannot hang it)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            err = errno.EISDIR if stat.S_ISDIR(st.st_mode) else errno.EINVAL
            raise OSError(err, f"{_kind(st.st_mode)}, not a regular file", str(path))
        if st.st_size > limit:
            raise OSError(errno.EFBIG, f"{st.st_size} bytes, larger than the {limit >> 20} MiB a "
                                       f"file read here may have", str(path))
        os.set_blocking(fd, True)
        return fd
    except BaseException:
        os.close(fd)
        raise


def read_regular(path: str | os.PathLike[str], limit: int = TEXT_LIMIT) -> bytes:
    """The bytes of regular file ``path`` (``open_regular``'s checks; at most ``limit``)."""
    fd = open_regular(path, limit)
    with os.fdopen(fd, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:  # grew while read
        raise OSError(errno.EFBIG, f"larger than the {limit >> 20} MiB a file read here may have", str(path))
    return data


def why_unwritable(path: Path) -> str | None:
    """Why directory ``path`` cannot be created (where missing) and written (None: it can).
    Probes by creating and removing a directory where the first missing piece would go."""
    path = Path(os.path.abspath(path))
    probe_in = path
    while not os.path.lexists(probe_in):
        probe_in = probe_in.parent
    if not probe_in.is_dir():
        what = "it" if probe_in == path else str(probe_in)
        return f"{what} is not a directory"
    try:
        os.rmdir(tempfile.mkdtemp(prefix=f".{PREFIX}-probe-", dir=probe_in))
    except OSError as e:
        return f"cannot make a directory in {probe_in}: {e.strerror or e}"
    return None


def check_output_dir(path: Path, option: str) -> Path:
    """``path`` if a directory can be made and written there; else ``PathRefused`` naming
    ``option`` (one line)."""
    why = why_unwritable(path)
    if why is not None:
        raise PathRefused(f"{option} {path}: cannot create or write this directory: {why}")
    return path


def check_output_file(path: Path, option: str) -> Path:
    """``path`` if it can become a file: not a directory, in a directory that can be made."""
    if path.is_dir():
        raise PathRefused(f"{option} {path}: is a directory (give a file name)")
    if os.path.lexists(path) and not path.is_file():
        raise PathRefused(f"{option} {path}: exists and is not a regular file")
    check_output_dir(path.parent, option)
    return path
