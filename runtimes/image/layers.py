"""Reading a file of an image through its layers, as the overlay would show it, without mounting.

The harness needs a few of the image's own files before anything runs (``/etc/passwd`` and
``/etc/group`` to turn ``User`` into numbers, which mountpoints the image lacks).  Mounting
an overlay for that would leave a mount to clean; instead the layers are searched top first,
honouring overlayfs's whiteouts (a 0/0 character device hides the name below it) and opaque
directories (``trusted.overlay.opaque=y``: nothing below shows through), as the image store
writes them (``runtimes.image.model``).  Symbolic links on the way are not followed: an
image whose ``/etc`` is a link is read as having no such file (never a host path).  The same
walk (``merged``) serves the image store, which refuses a layer that writes beneath a lower
layer's symbolic link (``runtimes.image.intake``).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator, Sequence
from pathlib import Path

OPAQUE_XATTR = "trusted.overlay.opaque"


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _opaque(path: Path) -> bool:
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def merged(trees_top_first: Sequence[Path], parts: Sequence[str]) -> Iterator[tuple[int, Path]]:
    """The merged (overlay) view of ``parts``'s prefixes, one component at a time: for each
    prefix the view has, (the mode of the entry it shows, the tree that entry comes from: the
    topmost that has it).  A directory merges the trees below it until a whiteout, an opaque
    directory or a non-directory; the walk ends at an entry that is not a directory (a file, a
    symbolic link: never looked beneath) or at a prefix the view does not have."""
    trees = list(trees_top_first)
    for i in range(1, len(parts) + 1):
        prefix = parts[:i]
        shown: tuple[int, Path] | None = None
        deeper = []
        for t in trees:
            try:
                st = os.lstat(t.joinpath(*prefix))
            except (FileNotFoundError, NotADirectoryError):
                continue  # not in this tree: the ones below show through
            if _is_whiteout(st) or (shown is not None and not stat.S_ISDIR(st.st_mode)):
                break  # hidden here, or a non-directory ends the merge of a directory above
            shown = shown or (st.st_mode, t)
            if not stat.S_ISDIR(st.st_mode):
                break
            deeper.append(t)
            if _opaque(t.joinpath(*prefix)):
                break
        if shown is None:
            return
        yield shown
        if not stat.S_ISDIR(shown[0]):
            return
        trees = deeper


def lookup(layers: Sequence[Path], rel: str) -> Path | None:
    """The host path of ``rel`` (e.g. ``etc/passwd``) in the merged view of ``layers`` (bottom
    first, as ``Image.layers``), or None when the merged view has no such entry."""
    parts = [p for p in rel.strip("/").split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        return None
    seen = list(merged(layers[::-1], parts))
    return seen[-1][1].joinpath(*parts) if len(seen) == len(parts) else None


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
