"""The guest's app starter (``native/guest_run.c``), built once, static, with the system compiler.

It runs inside a guest whose initramfs holds busybox and nothing else of a C library: it must
be static (libc6-dev's ``libc.a``).  Built before any ``t_launch`` into the guest cache
(``image.vm_cache()``), named by a hash of its source and build command, written to a
temporary file and renamed into place, so concurrent harnesses never pack a half-written one.
Builds of earlier sources are removed: a base archive holds its own copy of the starter.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from runtimes.base import BackendError

SOURCE = Path(__file__).resolve().parent / "native" / "guest_run.c"
#: -s: the initramfs is read into every guest's memory; symbols would be dead weight there
FLAGS = ("-O2", "-s", "-static", "-Wall", "-Wextra", "-Werror")
BUILD_TIMEOUT_S = 120
FIX = "apt-get install gcc libc6-dev"


def guest_run(cache_dir: Path) -> Path:
    """The built starter under ``cache_dir`` (built now unless there); BackendError says why not."""
    cc = shutil.which(os.environ.get("CC") or "cc") or shutil.which("gcc")
    if cc is None:
        raise BackendError(f"an image guest needs a C compiler for its app starter (fix: {FIX})")
    source = SOURCE.read_bytes()
    key = hashlib.sha256(source + "\0".join((cc, *FLAGS)).encode()).hexdigest()[:16]
    target = cache_dir / f"guest-run-{key}"
    if target.is_file():
        return target
    fd, tmp_name = tempfile.mkstemp(prefix=".build-", dir=cache_dir)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        done = subprocess.run([cc, *FLAGS, "-o", str(tmp), str(SOURCE)], capture_output=True, text=True,
                              timeout=BUILD_TIMEOUT_S, check=False)
        if done.returncode != 0:
            lines = (done.stderr or done.stdout).strip().splitlines()
            raise BackendError(f"building the guest's app starter failed ({FIX}?): "
                               f"{' | '.join(lines[-3:]) or done.returncode}")
        tmp.chmod(0o755)
        os.replace(tmp, target)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise BackendError(f"building the guest's app starter failed: {e}") from e
    finally:
        tmp.unlink(missing_ok=True)
    for old in cache_dir.glob("guest-run-*"):  # earlier sources' builds (a base archive keeps its own copy)
        if old != target:
            old.unlink(missing_ok=True)
    return target
