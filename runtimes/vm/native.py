"""The guest's app starter (``native/guest_run.c``), built once, static, with the system compiler.

It runs inside a guest whose initramfs holds busybox and nothing else of a C library: it must
be static (libc6-dev's ``libc.a``).  Built before any ``t_launch`` into the guest cache
(``image.vm_cache()``), named by a hash of its source and build command, by the system
compiler as the zygote is (``runtimes.cbuild``: found by absolute path, root's alone, a fixed
environment, a temporary file renamed into place, so concurrent harnesses never pack a
half-written one).
Builds of earlier sources are removed: a base archive holds its own copy of the starter.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from runtimes import cbuild
from runtimes.base import BackendError

SOURCE = Path(__file__).resolve().parent / "native" / "guest_run.c"
#: -s: the initramfs is read into every guest's memory; symbols would be dead weight there
FLAGS = ("-O2", "-s", "-static", "-Wall", "-Wextra", "-Werror")


def guest_run(cache_dir: Path) -> Path:
    """The built starter under ``cache_dir`` (built now unless there); BackendError says why not."""
    try:
        cc = cbuild.compiler()  # by absolute path, root's alone (it runs as root)
        source = SOURCE.read_bytes()
        key = hashlib.sha256(source + "\0".join((cc, *FLAGS)).encode()).hexdigest()[:16]
        target = cache_dir / f"guest-run-{key}"
        if target.is_file():
            return target
        cbuild.build_into(target, cc, SOURCE, (FLAGS,))
    except (cbuild.BuildError, OSError) as e:
        raise BackendError(f"an image guest's app starter cannot be built: {e}") from e
    for old in cache_dir.glob("guest-run-*"):  # earlier sources' builds (a base archive keeps its own copy)
        if old != target:
            old.unlink(missing_ok=True)
    return target
