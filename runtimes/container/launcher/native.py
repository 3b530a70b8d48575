"""Building the native zygote (``zygote.c``, beside this module) with the system C compiler, cached.

The binary is built on the first launch of a backend (before any t_launch),
under the cache that also holds the rootfs (``rootfs.cache_dir()``), named by a
hash of its source and build command: a changed source builds a new one, an
unchanged one is reused across runs.  The build writes a temporary file and
renames it into place, so concurrent harnesses never run a half-written binary.
Static when the C library's static archive is there (no dynamic loader in each
exec of the zygote), else dynamic.

The compiler is a system one, found by absolute path (``compiler``): not
whatever ``cc`` comes first on root's PATH.  ``$CC`` is honoured only as an
absolute path; either way every link and directory on the way to the binary
must be root's and writable by nobody else, and the build runs with a fixed
PATH and nothing else of the caller's environment (``runtimes.cbuild``, which
builds the guest's app starter the same way).  This binary runs as root
and forks every container's init: the cache directory must be root's alone
(``trust.ensure_dir``), the build is sealed with the SHA-256 of its bytes and of
its source (``trust.seal``), and a binary whose seal does not match is refused
(``trust.Untrusted``, one line), not run.

Without a compiler, or when the build fails, ``build()`` raises
``NativeUnavailable`` with the reason; the backend then runs the Python zygote
and records why.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path

from runtimes import cbuild, rootfs, trust
from runtimes.cbuild import BUILD_ENV as BUILD_ENV  # (the build's environment: tests ask it here)
from runtimes.cbuild import compiler as compiler

SOURCE = Path(__file__).resolve().with_name("zygote.c")
FLAGS = ("-O2", "-Wall", "-Wextra", "-Werror")
#: static first (no dynamic loader in each exec of the zygote); without libc6-dev's libc.a, dynamic
ATTEMPTS = ((*FLAGS, "-static"), FLAGS)

#: the native zygote cannot be built here; the message says why
NativeUnavailable = cbuild.BuildError


def build(cache: Path | None = None) -> Path:
    """The path of the built zygote (built now unless cached and intact); raises
    ``NativeUnavailable`` when it cannot be built, ``trust.Untrusted`` when the cache or the
    binary there is not what this harness built (``verified``).  (Each zygote asks once, and
    again at each restart: a hash of the source and of the binary, ~2 ms.)"""
    cc = compiler()
    try:
        source = SOURCE.read_bytes()
    except OSError as e:
        raise NativeUnavailable(f"cannot read {SOURCE}: {e.strerror}") from e
    key = hashlib.sha256(source + "\0".join((cc, *FLAGS)).encode()).hexdigest()[:16]
    directory = trust.ensure_dir((cache or rootfs.cache_dir()) / "zygote", "the zygote cache")
    target = directory / f"isobench-zygote-{key}"
    origin = _origin(source, cc)
    if os.path.lexists(target) and trust.sealed(target):
        trust.verify(target, origin, "the native zygote")
        return target
    # not there, or left by a harness that sealed nothing: build it (again) and seal it
    cbuild.build_into(target, cc, SOURCE, ATTEMPTS)
    try:
        trust.seal(target, origin)
    except OSError as e:
        raise NativeUnavailable(f"building {SOURCE.name} failed: {e}") from e
    if not os.access(target, os.X_OK):  # e.g. a cache on a noexec mount
        raise NativeUnavailable(f"{target} was built but cannot be executed (a noexec mount?)")
    _prune(target)
    return target


#: binaries verified, by what a write would change (device, inode, size, mtime, ctime): a
#: ``container:cold`` launch starts a zygote inside its timed window, and hashing the binary
#: there (~2 ms) would be counted in every launch; a stat is not
_verified: dict[Path, tuple[int, ...]] = {}


def verified(binary: Path) -> None:
    """``trust.Untrusted`` unless ``binary`` still holds the bytes built from today's source
    (asked before every start of the zygote: a restart must not run something swapped in)."""
    key: tuple[int, ...] = ()
    with contextlib.suppress(OSError):
        st = os.stat(binary)
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    if key and _verified.get(binary) == key:
        return
    trust.verify(binary, _origin(SOURCE.read_bytes(), compiler()), "the native zygote")
    _verified[binary] = key


def _origin(source: bytes, cc: str) -> dict[str, object]:
    """What a zygote binary is built from: its seal records it, and a use checks it."""
    return {"source_sha256": hashlib.sha256(source).hexdigest(), "cc": cc, "flags": list(FLAGS)}


def _prune(current: Path) -> None:
    """Remove the binaries of earlier sources: one per source change would pile up.  A zygote
    still running from one keeps its inode; a harness of another version rebuilds its own."""
    for old in current.parent.glob("isobench-zygote-*"):
        if old != current:
            old.unlink(missing_ok=True)
            trust.manifest_path(old).unlink(missing_ok=True)
