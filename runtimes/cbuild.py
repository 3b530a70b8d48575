"""Building a C helper of ours with the system compiler, into a cache, as root: the one way.

Two helpers are built so (the container's native zygote, ``container/launcher/native.py``; the
guest's app starter, ``vm/native.py``), each before any ``t_launch``, under a name its caller
derives from a hash of the source and the build command.

The compiler is a system one, found by absolute path (``compiler``): not whatever ``cc``
comes first on root's PATH.  ``$CC`` is honoured only as an absolute path; either way every
link and directory on the way to it must be root's and writable by nobody else
(``trust.untrusted``), and the build runs with a fixed PATH and nothing else of the caller's
environment.  The build writes a temporary file beside the target and renames it into place
(``build_into``), so concurrent harnesses never run, or pack, a half-written binary.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from runtimes.trust import untrusted

#: where the system compiler is looked for (in this order of names: cc, gcc, clang)
SYSTEM_DIRS = ("/usr/bin", "/bin")
COMPILERS = ("cc", "gcc", "clang")
#: the build's whole environment: the toolchain finds as/ld on this PATH, nothing else leaks in
BUILD_ENV = {"PATH": ":".join(SYSTEM_DIRS), "LC_ALL": "C"}
#: a build takes ~1 s here; anything near this is a broken toolchain
BUILD_TIMEOUT_S = 120
FIX = "apt-get install gcc libc6-dev"


class BuildError(RuntimeError):
    """A helper cannot be built here; the message says why (one line)."""


def compiler() -> str:
    """The absolute path of the system C compiler (``$CC`` when it is an absolute path);
    ``BuildError`` when there is none, or it is not root's alone (``untrusted``)."""
    cc = os.environ.get("CC")
    if cc:
        if not os.path.isabs(cc):
            raise BuildError(f"$CC={cc!r} is not an absolute path (isobench builds its helpers as root: "
                             f"no PATH search)")
        candidates = [cc]
    else:
        candidates = [os.path.join(d, n) for n in COMPILERS for d in SYSTEM_DIRS]
    found = [c for c in candidates if os.path.lexists(c)]
    if not found:
        raise BuildError(f"no C compiler in {', '.join(SYSTEM_DIRS)} (fix: {FIX})")
    why = untrusted(found[0])
    if why is not None:
        raise BuildError(f"the C compiler {found[0]} is refused: {why}")
    return found[0]


def build_into(target: Path, cc: str, source: Path, attempts: Sequence[Sequence[str]]) -> None:
    """Compile ``source`` to ``target`` with the flags of the first of ``attempts`` the compiler
    accepts (e.g. static, then dynamic), through a temporary file renamed into place (atomic: a
    concurrent build replaces it with the same bytes).  ``BuildError`` with the compiler's last
    lines when none does, or when the cache cannot be written."""
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=".build-", dir=target.parent)
        os.close(fd)
    except OSError as e:
        raise BuildError(f"cannot write to {target.parent}: {e.strerror}") from e
    tmp = Path(tmp_name)
    try:
        for flags in attempts:
            done = subprocess.run([cc, *flags, "-o", str(tmp), str(source)], capture_output=True, text=True,
                                  timeout=BUILD_TIMEOUT_S, check=False, env=BUILD_ENV, stdin=subprocess.DEVNULL)
            if done.returncode == 0:
                break
        else:
            lines = (done.stderr or done.stdout).strip().splitlines()
            raise BuildError(f"{cc} failed on {source.name} (fix: {FIX}?): {' | '.join(lines[-3:]) or done.returncode}")
        tmp.chmod(0o755)
        os.replace(tmp, target)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise BuildError(f"building {source.name} failed: {e}") from e
    finally:
        tmp.unlink(missing_ok=True)
