"""Unpack a run directory a host sent back, treating the archive as hostile.

A host is only as trustworthy as whoever controls it, so nothing in its archive
decides where a byte lands: every member must be a plain file or directory
under the one expected top directory (the host's run id), with a relative
name free of ``..``; links, devices and FIFOs are refused, as are duplicate
names, more than ``MAX_MEMBERS`` members or ``MAX_BYTES`` of content (a
decompression bomb).  Files are created by this code (``O_EXCL|O_NOFOLLOW``,
mode 0644), never by ``tarfile.extract``, inside a private staging directory
that is renamed into place only when everything was read; on any refusal the
staging directory is removed and nothing is left.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import zlib
from pathlib import Path, PurePosixPath

from harness import results

MAX_BYTES = 2 << 30
MAX_MEMBERS = 100_000
_CHUNK = 1 << 20


class UnsafeArchive(ValueError):
    """The archive was refused; str() says why, in one line."""


def _relative(name: str, top: str) -> PurePosixPath:
    """The member's path below ``top``; refuses absolute names, ``..``, and anything outside ``top``."""
    if not name or "\\" in name or "\0" in name or name.startswith("/"):
        raise UnsafeArchive(f"member {name!r}: not a plain relative name")
    parts = [p for p in PurePosixPath(name).parts if p != "."]
    if any(p == ".." for p in parts):
        raise UnsafeArchive(f"member {name!r}: climbs out with '..'")
    if not parts or parts[0] != top:
        raise UnsafeArchive(f"member {name!r}: outside the run directory {top!r}")
    return PurePosixPath(*parts[1:]) if len(parts) > 1 else PurePosixPath(".")


def _write(tar: tarfile.TarFile, member: tarfile.TarInfo, target: Path, budget: int) -> int:
    """Copy one member's bytes into a new file; returns how many were written."""
    src = tar.extractfile(member)
    if src is None:
        raise UnsafeArchive(f"member {member.name!r}: no content")
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    written = 0
    with os.fdopen(fd, "wb") as out:
        while chunk := src.read(_CHUNK):
            written += len(chunk)
            if written > budget:
                raise UnsafeArchive(f"more than {MAX_BYTES} bytes of content")
            out.write(chunk)
    return written


def _extract_into(tar: tarfile.TarFile, top: str, staging: Path) -> None:
    total, count = 0, 0
    for member in tar:
        count += 1
        if count > MAX_MEMBERS:
            raise UnsafeArchive(f"more than {MAX_MEMBERS} members")
        rel = _relative(member.name, top)
        target = staging / top / rel
        if member.isdir():
            target.mkdir(mode=0o755, parents=True, exist_ok=True)
        elif member.isreg() and not member.issparse():
            if rel == PurePosixPath("."):
                raise UnsafeArchive(f"member {member.name!r}: a file where the run directory belongs")
            if total + member.size > MAX_BYTES:
                raise UnsafeArchive(f"more than {MAX_BYTES} bytes of content")
            target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            total += _write(tar, member, target, MAX_BYTES - total)
        else:
            kind = "link" if member.issym() or member.islnk() else "special file"
            raise UnsafeArchive(f"member {member.name!r}: a {kind}")


def extract_run(archive: Path, dest: Path, top: str) -> Path:
    """Unpack the run directory ``top`` of ``archive`` as ``dest`` (which must not exist yet)."""
    if dest.exists():
        raise UnsafeArchive(f"{dest} exists already")
    staging = dest.parent / f".{dest.name}.unpacking-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(mode=0o700)
    try:
        try:
            with tarfile.open(archive, "r:*") as tar:
                _extract_into(tar, top, staging)
        except FileExistsError as e:
            raise UnsafeArchive(f"member {Path(e.filename or '?').name!r} appears twice") from e
        except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
            if isinstance(e, OSError) and e.filename and Path(e.filename).is_relative_to(staging):
                raise UnsafeArchive(f"cannot write {e.filename}: {e.strerror}") from e
            raise UnsafeArchive(f"not a readable archive: {e}") from e
        run = staging / top
        if not (run / results.MANIFEST).is_file():
            raise UnsafeArchive(f"no {top}/{results.MANIFEST} in it: not a run directory")
        os.rename(run, dest)
        return dest
    finally:
        shutil.rmtree(staging, ignore_errors=True)
