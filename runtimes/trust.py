"""What runs as root is what we built: the caches' ownership, and the content of what is in them.

isobench executes, as root, a zygote it compiled into its cache, mounts image layers it
unpacked there and boots kernels it fetched there.  Anyone who can write into the cache
could swap any of them for their own.  So:

- every directory on the way to a cache (``untrusted_dir``) must belong to root (or to the
  user running isobench, when it is not root) and be writable by nobody else, except a
  sticky directory such as ``/tmp``, where others cannot remove or rename what they do not
  own; ``ensure_dir`` creates what is missing that way (mode 0755, whatever the umask);
- a file isobench built is *sealed*: a manifest beside it (``.<name>.json``) records the
  SHA-256 of its bytes and what it was built from, and ``verify`` refuses a file whose bytes,
  owner, mode or origin do not match.

Between the check and the use (an exec, a mount) only someone who can write into the
directory chain could swap the file, and that is root alone.  A failed check is one line
(``Untrusted``), never a silent fall-back to something else.

A leaf module (standard library only) so that the zygote build, the image store and the
kernel cache share one rule.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: bytes read at a time while hashing
_CHUNK = 1 << 20


class Untrusted(RuntimeError):
    """A cache or a file in it that isobench may not run as root; the message says why (one line)."""


def _owners() -> tuple[int, ...]:
    """Who may own what isobench runs: root, and the user running it (their own cache)."""
    return tuple(sorted({0, os.geteuid()}))


def _bad_owner(p: str, st: os.stat_result) -> str | None:
    if st.st_uid not in _owners():
        return f"{p} belongs to uid {st.st_uid}, not to root"
    return None


def untrusted(path: str) -> str | None:
    """Why ``path`` may not be executed as root (None: it may): it, each symlink on the way and
    every directory above them must belong to root and be writable by nobody else."""
    seen: set[str] = set()
    while True:
        for p in (path, *map(str, Path(path).parents)):
            try:
                st = os.lstat(p)
            except OSError as e:
                return f"{p}: {e.strerror}"
            if st.st_uid != 0 or (st.st_mode & 0o022 and not stat.S_ISLNK(st.st_mode)):
                return f"{p} is not root's alone (owner uid {st.st_uid}, mode {stat.S_IMODE(st.st_mode):o})"
        if not os.path.islink(path):
            return None if os.access(path, os.X_OK) else f"{path} is not executable"
        if path in seen or len(seen) > 40:
            return f"{path}: a symlink loop"
        seen.add(path)
        path = os.path.normpath(os.path.join(os.path.dirname(path), os.readlink(path)))


def untrusted_dir(path: Path | str) -> str | None:
    """Why directory ``path`` may not hold what root runs (None: it may).  Every existing
    directory from ``/`` down to it -- followed through symlinks, each of which must itself be
    root's -- belongs to root (or the caller) and is writable by nobody else, unless it is
    sticky (``/tmp``).  Components that do not exist yet are not judged (``ensure_dir``
    makes them right)."""
    path = os.path.abspath(path)
    seen = 0
    parts = Path(path).parts
    current = "/"
    i = 1
    while i <= len(parts):
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            return None  # the rest is made by ensure_dir, as it should be
        except OSError as e:
            return f"{current}: {e.strerror}"
        if stat.S_ISLNK(st.st_mode):
            if (why := _bad_owner(current, st)) is not None:
                return why
            seen += 1
            if seen > 40:
                return f"{path}: too many symlinks"
            target = os.path.join(os.path.dirname(current), os.readlink(current))
            # judge the target's own chain from / again, then go on below it
            rest = parts[i:]
            parts = Path(os.path.normpath(target)).parts + tuple(rest)
            current, i = "/", 1
            continue
        if not stat.S_ISDIR(st.st_mode):
            return f"{current} is not a directory"
        if (why := _bad_owner(current, st)) is not None:
            return why
        if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
            return f"{current} is writable by others (mode {stat.S_IMODE(st.st_mode):o})"
        if i == len(parts):
            return None
        current = os.path.join(current, parts[i])
        i += 1
    return None


def ensure_dir(path: Path, what: str) -> Path:
    """``path``, a directory only root (or the caller) can write to, made (0755) where missing;
    ``Untrusted`` when one of its directories is someone else's or writable by others."""
    why = untrusted_dir(path)
    if why is not None:
        raise Untrusted(f"{what} {path} is refused: {why} (isobench runs what is there as root; "
                        f"fix the owner and mode, or point ISOBENCH_CACHE elsewhere)")
    missing = []
    p = Path(os.path.abspath(path))
    while not os.path.lexists(p):
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        with contextlib.suppress(FileExistsError):  # a concurrent harness made it
            os.mkdir(d, 0o755)
            os.chmod(d, 0o755)  # mkdir's mode went through the umask
    why = untrusted_dir(path)
    if why is not None:  # made meanwhile by someone else
        raise Untrusted(f"{what} {path} is refused: {why}")
    return path


def digest(path: Path | str) -> str:
    """The SHA-256 of a file's bytes (hex), read without following a final symlink."""
    h = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def manifest_path(path: Path) -> Path:
    """Where the seal of ``path`` lives: ``.<name>.json`` beside it (no glob of ``<name>*``
    that prunes siblings matches it)."""
    return path.with_name(f".{path.name}.json")


def seal(path: Path, origin: Mapping[str, Any]) -> None:
    """Record what ``path`` is (its SHA-256) and what it was made from (``origin``), written
    beside it and renamed into place."""
    record = {"sha256": digest(path), "origin": dict(origin)}
    target = manifest_path(path)
    tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record, sort_keys=True) + "\n")
    os.replace(tmp, target)


def sealed(path: Path) -> bool:
    """Whether ``path`` has a seal at all (files made before seals existed have none)."""
    return manifest_path(path).exists()


def verify(path: Path, origin: Mapping[str, Any], what: str) -> None:
    """``Untrusted`` unless ``path`` is a regular file of root's (or the caller's), writable by
    nobody else, in a trusted directory, sealed with ``origin`` and still holding the bytes
    that were sealed."""
    why = untrusted_dir(path.parent)
    if why is None:
        try:
            st = os.lstat(path)
        except OSError as e:
            raise Untrusted(f"{what} {path}: {e.strerror}") from e
        if not stat.S_ISREG(st.st_mode):
            why = "not a regular file"
        elif st.st_mode & 0o022:
            why = f"writable by others (mode {stat.S_IMODE(st.st_mode):o})"
        else:
            why = _bad_owner(str(path), st)
    if why is None:
        try:
            record = json.loads(manifest_path(path).read_text())
        except (OSError, ValueError):
            record = None
        if not isinstance(record, dict) or record.get("origin") != dict(origin):
            why = f"its seal {manifest_path(path).name} is missing or names another origin"
        elif record.get("sha256") != (actual := digest(path)):
            why = f"its bytes changed since it was built (sha256 {actual[:16]}…, sealed {str(record.get('sha256'))[:16]}…)"
    if why is not None:
        raise Untrusted(f"{what} {path} is refused: {why} (remove it and isobench builds it again)")
