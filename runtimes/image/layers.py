"""Reading a file of an image through its layers, as the overlay would show it, without mounting.

The harness needs a few of the image's own files before anything runs (``/etc/passwd`` and
``/etc/group`` to turn ``User`` into numbers, which mountpoints the image lacks).  Mounting
an overlay for that would leave a mount to clean; instead the layers are searched top first,
honouring overlayfs's whiteouts (a 0/0 character device hides the name below it) and opaque
directories (``trusted.overlay.opaque=y``: nothing below shows through), as the image store
writes them (``runtimes.image.model``).  Symbolic links on the way are not followed: an
image whose ``/etc`` is a link is read as having no such file (never a host path).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path

OPAQUE_XATTR = "trusted.overlay.opaque"


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _opaque(path: Path) -> bool:
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def lookup(layers: Sequence[Path], rel: str) -> Path | None:
    """The host path of ``rel`` (e.g. ``etc/passwd``) in the merged view of ``layers`` (bottom
    first, as ``Image.layers``), or None when the merged view has no such entry."""
    parts = [p for p in rel.strip("/").split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        return None
    for layer in reversed(layers):
        found, hides = _in_layer(layer, parts)
        if found is not None or hides:
            return found
    return None


def _in_layer(layer: Path, parts: list[str]) -> tuple[Path | None, bool]:
    """(the entry in this layer, or None; whether this layer hides the layers below for it)."""
    here = layer
    opaque = False
    for i, part in enumerate(parts):
        here = here / part
        try:
            st = os.lstat(here)
        except OSError:
            return None, opaque  # not here: below shows through, unless a directory above is opaque
        if _is_whiteout(st):
            return None, True
        if i == len(parts) - 1:
            return here, True
        if not stat.S_ISDIR(st.st_mode):
            return None, True  # a file or a link where a directory should be: nothing below shows
        opaque = opaque or _opaque(here)
    return None, opaque  # pragma: no cover - the loop always returns


def exists(layers: Sequence[Path], rel: str) -> bool:
    return lookup(layers, rel) is not None


def read_text(layers: Sequence[Path], rel: str, limit: int = 1 << 20) -> str | None:
    """The text of a regular file ``rel`` of the merged view (at most ``limit`` bytes read), or None."""
    path = lookup(layers, rel)
    if path is None:
        return None
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return None
        with open(path, "rb") as f:
            return f.read(limit).decode(errors="replace")
    except OSError:
        return None
