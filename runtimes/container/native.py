"""Building the native zygote (``native/zygote.c``) with the system C compiler, cached.

The binary is built on the first launch of a backend (before any t_launch),
under the cache that also holds the rootfs (``rootfs.cache_dir()``), named by a
hash of its source and build command: a changed source builds a new one, an
unchanged one is reused across runs.  The build writes a temporary file and
renames it into place, so concurrent harnesses never run a half-written binary.
Static when the C library's static archive is there (no dynamic loader in each
exec of the zygote), else dynamic.

Without a compiler, or when the build fails, ``build()`` raises
``NativeUnavailable`` with the reason; the backend then runs the Python zygote
and records why.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from runtimes import rootfs

SOURCE = Path(__file__).resolve().parent / "native" / "zygote.c"
FLAGS = ("-O2", "-Wall", "-Wextra", "-Werror")
#: a build takes ~1 s here; anything near this is a broken toolchain
BUILD_TIMEOUT_S = 120


class NativeUnavailable(RuntimeError):
    """The native zygote cannot be built here; the message says why."""


def compiler() -> str | None:
    """The system C compiler (``$CC`` if set), or None."""
    cc = os.environ.get("CC") or "cc"
    return shutil.which(cc) or shutil.which("gcc")


def _compile(cc: str, out: Path, static: bool) -> subprocess.CompletedProcess[str]:
    cmd = [cc, *FLAGS, *(["-static"] if static else []), "-o", str(out), str(SOURCE)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False)


def build(cache: Path | None = None) -> Path:
    """The path of the built zygote (built now unless cached); raises ``NativeUnavailable``.
    (Each zygote asks once; finding the cached one costs a hash of the source, ~0.1 ms.)"""
    cc = compiler()
    if cc is None:
        raise NativeUnavailable("no C compiler (cc/gcc) found (fix: apt-get install gcc libc6-dev)")
    try:
        source = SOURCE.read_bytes()
    except OSError as e:
        raise NativeUnavailable(f"cannot read {SOURCE}: {e.strerror}") from e
    key = hashlib.sha256(source + "\0".join((cc, *FLAGS)).encode()).hexdigest()[:16]
    target = (cache or rootfs.cache_dir()) / "zygote" / f"isobench-zygote-{key}"
    if os.access(target, os.X_OK):
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=".build-", dir=target.parent)
        os.close(fd)
    except OSError as e:
        raise NativeUnavailable(f"cannot write to {target.parent}: {e.strerror}") from e
    tmp = Path(tmp_name)
    try:
        done = _compile(cc, tmp, static=True)
        if done.returncode != 0:  # no static libc (libc6-dev's libc.a): a dynamic binary does too
            done = _compile(cc, tmp, static=False)
        if done.returncode != 0:
            lines = (done.stderr or done.stdout).strip().splitlines()
            raise NativeUnavailable(f"{cc} failed on {SOURCE.name}: {' | '.join(lines[-3:]) or done.returncode}")
        tmp.chmod(0o755)
        os.replace(tmp, target)  # atomic: a concurrent build just replaces it with the same bytes
    except (OSError, subprocess.TimeoutExpired) as e:
        raise NativeUnavailable(f"building {SOURCE.name} failed: {e}") from e
    finally:
        tmp.unlink(missing_ok=True)
    if not os.access(target, os.X_OK):  # e.g. a cache on a noexec mount
        raise NativeUnavailable(f"{target} was built but cannot be executed (a noexec mount?)")
    _prune(target)
    return target


def _prune(current: Path) -> None:
    """Remove the binaries of earlier sources: one per source change would pile up.  A zygote
    still running from one keeps its inode; a harness of another version rebuilds its own."""
    for old in current.parent.glob("isobench-zygote-*"):
        if old != current:
            old.unlink(missing_ok=True)
