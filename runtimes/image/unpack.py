"""One layer's tar, unpacked into its own directory in overlayfs's form — safely.

``tarfile`` only *parses* here; every file is created by this module, because neither
``extractall``'s filters nor ``umoci`` fit an image layer: the ``data`` filter drops owners and
setuid bits and refuses device nodes an image may legitimately whiteout with, the ``tar`` filter
follows symlinks already written, and umoci flattens layers into one rootfs.

The rules (each refusal is one ImageError line naming the entry):
- a name is archive-relative: an absolute name or one with ``..`` is refused;
- nothing is written through a symlink: a parent of an entry must be a real directory of this
  layer (a symlink there is refused; a directory the layer does not list is created and
  recorded as *implicit*, so the store can refuse a write through a lower layer's symlink too);
  the entry itself replaces whatever the layer had at that name (``O_EXCL|O_NOFOLLOW``);
- a hardlink names a file of this same layer, never a host path;
- character and block devices are skipped and counted (runc's rootless mode and podman's do
  the same; the backends mount ``/dev`` themselves, and layers are mounted ``nodev``);
- only ``user.*`` and ``security.capability`` xattrs are kept: ``trusted.overlay.*`` would steer
  overlayfs, ``security.selinux`` labels belong to the host;
- whiteouts become overlayfs's own form: ``.wh.NAME`` a 0/0 character device ``NAME``, an opaque
  ``.wh..wh..opq`` the ``trusted.overlay.opaque=y`` xattr on its directory.  A whiteout only
  hides lower layers: an entry of the same layer at that name wins, and a directory there
  becomes opaque instead;
- the uncompressed stream and the bytes written are both held under the layer cap, the
  entries under their own cap; a tar that ends without its end marker, or has data after it,
  is refused (tarfile alone would stop quietly at a bad header).
"""

from __future__ import annotations

import base64
import os
import shutil
import stat
import tarfile
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from runtimes.image.model import ImageError
from runtimes.image.streams import Caps

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
KEPT_XATTRS = ("user.", "security.capability")
MAX_PATH = 4096
#: a tar ends with two zero blocks
END_MARKER = 2 * tarfile.BLOCKSIZE
#: tar's extended headers (pax, GNU long names) are read into memory whole: real ones are small
MAX_HEADER = 1 << 20
_HEADER_TYPES = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE, tarfile.GNUTYPE_LONGNAME,
                 tarfile.GNUTYPE_LONGLINK)

Parts = tuple[str, ...]


@dataclass
class LayerStats:
    size: int = 0
    entries: int = 0
    skipped_devices: int = 0
    dropped_xattrs: int = 0
    implicit_dirs: list[str] = field(default_factory=list)


def entry_parts(name: str, what: str) -> Parts:
    """``name``'s components inside the layer; () is the layer's root."""
    if len(name) > MAX_PATH:
        raise ImageError(f"{what}: an entry's name is longer than {MAX_PATH} bytes")
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if name.startswith("/") and parts:  # "/" alone is the root (umoci insert … / writes it so)
        raise ImageError(f"{what}: entry {name[:100]!r} has an absolute path")
    if ".." in parts:
        raise ImageError(f"{what}: entry {name[:100]!r} leaves the layer (..)")
    return parts


def _xattrs(info: tarfile.TarInfo) -> tuple[dict[str, bytes], int]:
    """The xattrs a member carries (pax SCHILY.xattr.*, LIBARCHIVE.xattr.*) that are kept, and
    how many were dropped."""
    kept, dropped = {}, 0
    for key, value in info.pax_headers.items():
        if key.startswith("SCHILY.xattr."):
            name, data = key[len("SCHILY.xattr."):], value.encode("utf-8", "surrogateescape")
        elif key.startswith("LIBARCHIVE.xattr."):
            name = urllib.parse.unquote(key[len("LIBARCHIVE.xattr."):])
            data = base64.b64decode(value + "=" * (-len(value) % 4))
        else:
            continue
        if name.startswith(KEPT_XATTRS[0]) or name == KEPT_XATTRS[1]:
            kept[name] = data
        else:
            dropped += 1
    return kept, dropped


class BoundedTarInfo(tarfile.TarInfo):
    """A TarInfo that refuses an extended header over :data:`MAX_HEADER` before tarfile reads it
    into memory (``_proc_member`` is where tarfile dispatches on the header's type)."""

    def _proc_member(self, tarfile: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type in _HEADER_TYPES and self.size > MAX_HEADER:
            raise ImageError(f"a tar extended header of {self.size} bytes (over {MAX_HEADER})")
        return super()._proc_member(tarfile)  # type: ignore[misc]


class Unpacker:
    """Unpacks one layer tar into ``root`` (an empty directory of the store's temporary area)."""

    def __init__(self, root: Path, caps: Caps, what: str):
        self.root, self.caps, self.what = root, caps, what
        self.stats = LayerStats()
        self.real_dirs: set[Parts] = {()}
        self.whiteouts: set[Parts] = set()
        #: explicit directories: their attributes are applied last (files written into them change mtimes)
        self.dirs: dict[Parts, tarfile.TarInfo] = {}
        self.implicit: set[Parts] = set()
        self.written = 0
        self.end = 0

    def path(self, parts: Parts) -> str:
        return os.path.join(self.root, *parts)

    def run(self, stream: BinaryIO) -> LayerStats:
        """Unpack every entry; :attr:`end` is then the offset of the header the tar ended at."""
        tar = tarfile.open(fileobj=stream, mode="r|", errors="surrogateescape", tarinfo=BoundedTarInfo)
        for info in tar:
            # stream mode keeps every header otherwise (a million entries = GBs of TarInfo)
            tar.members = []  # type: ignore[attr-defined]
            self.stats.entries += 1
            if self.stats.entries > self.caps.entries:
                raise ImageError(f"{self.what}: more than {self.caps.entries} entries")
            try:
                self.member(tar, info)
            except ImageError:
                raise
            except (OSError, OverflowError, ValueError) as e:
                reason = getattr(e, "strerror", None) or str(e)
                raise ImageError(f"{self.what}: cannot unpack {info.name[:100]!r}: {reason}") from None
        self.end = tar.offset
        self.finish()
        self.stats.implicit_dirs = sorted("/".join(p) for p in self.implicit)
        return self.stats

    # --- one member -----------------------------------------------------------------------
    def member(self, tar: tarfile.TarFile, info: tarfile.TarInfo) -> None:
        parts = entry_parts(info.name, self.what)
        base = parts[-1] if parts else ""
        if base.startswith(WHITEOUT):
            self.whiteout(parts, info.name)
            return
        if info.ischr() or info.isblk():
            self.stats.skipped_devices += 1
            return
        if not (info.isdir() or info.isreg() or info.issym() or info.islnk() or info.isfifo()):
            raise ImageError(f"{self.what}: entry {info.name[:100]!r} has an unsupported type {info.type!r}")
        if not parts:
            if not info.isdir():
                raise ImageError(f"{self.what}: the layer's root entry is not a directory")
            self.dirs[()] = info
            return
        self.parents(parts, info.name)
        was_whiteout = self.clear(parts, info.isdir())
        if info.isdir():
            self.directory(parts, info, was_whiteout)
        elif info.isreg():
            self.regular(tar, parts, info)
        elif info.issym():
            os.symlink(info.linkname, self.path(parts))
            self.attrs_nofollow(parts, info)
        elif info.islnk():
            self.hardlink(parts, info)
        else:
            os.mkfifo(self.path(parts), 0o600)
            self.attrs_nofollow(parts, info)
            os.chmod(self.path(parts), info.mode & 0o7777)

    def parents(self, parts: Parts, name: str) -> None:
        """Each parent of ``parts`` a real directory of this layer, created (implicit) if missing."""
        for i in range(1, len(parts)):
            p = parts[:i]
            if p in self.real_dirs:
                continue
            try:
                st = os.lstat(self.path(p))
            except FileNotFoundError:
                st = None
            if st is not None and stat.S_ISLNK(st.st_mode):
                raise ImageError(f"{self.what}: entry {name[:100]!r} lies beneath the symlink "
                                 f"{'/'.join(p)!r} (a write through a link)")
            if st is None or p in self.whiteouts:
                self.clear(p, True)
                os.mkdir(self.path(p), 0o755)
                self.implicit.add(p)
                if st is not None:  # a whiteout of this layer, then entries beneath it
                    os.setxattr(self.path(p), OPAQUE_XATTR, b"y")
                    self.whiteouts.discard(p)
            elif not stat.S_ISDIR(st.st_mode):
                raise ImageError(f"{self.what}: entry {name[:100]!r}: {'/'.join(p)!r} is not a directory")
            self.real_dirs.add(p)

    def clear(self, parts: Parts, keep_dir: bool) -> bool:
        """Make room for a new entry at ``parts`` (a later entry wins); True if a whiteout was there."""
        full = self.path(parts)
        try:
            st = os.lstat(full)
        except FileNotFoundError:
            return False
        if stat.S_ISDIR(st.st_mode):
            if keep_dir:
                return False
            shutil.rmtree(full)  # never follows a symlink inside
            n = len(parts)
            for group in (self.real_dirs, self.whiteouts, self.implicit):
                group.difference_update({p for p in group if p[:n] == parts})
            for p in [p for p in self.dirs if p[:n] == parts]:
                del self.dirs[p]
            return False
        os.unlink(full)
        was = parts in self.whiteouts
        self.whiteouts.discard(parts)
        return was

    def directory(self, parts: Parts, info: tarfile.TarInfo, was_whiteout: bool) -> None:
        if parts not in self.real_dirs:
            os.mkdir(self.path(parts), 0o755)
            self.real_dirs.add(parts)
        self.implicit.discard(parts)
        self.dirs[parts] = info
        if was_whiteout:  # the layer deleted the lower one, then made its own: hide the lower content
            os.setxattr(self.path(parts), OPAQUE_XATTR, b"y")

    def regular(self, tar: tarfile.TarFile, parts: Parts, info: tarfile.TarInfo) -> None:
        src = tar.extractfile(info)
        assert src is not None  # a regular member always has a reader
        fd = os.open(self.path(parts), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            while chunk := src.read(1 << 20):
                self.written += len(chunk)
                if self.written > self.caps.layer_bytes:  # sparse members expand past the stream
                    raise ImageError(f"{self.what} unpacks to more than the cap of {self.caps.layer_bytes} bytes")
                os.write(fd, chunk)
            self.stats.size += info.size
            self.attrs_fd(fd, info)
        finally:
            os.close(fd)

    def hardlink(self, parts: Parts, info: tarfile.TarInfo) -> None:
        target = entry_parts(info.linkname.lstrip("/"), self.what) if info.linkname else ()
        shown = f"hardlink {info.name[:80]!r} -> {info.linkname[:80]!r}"
        ok = bool(target) and all(target[:i] in self.real_dirs for i in range(1, len(target)))
        if ok:
            try:
                st = os.lstat(self.path(target))
                ok = not stat.S_ISDIR(st.st_mode) and target not in self.whiteouts
            except FileNotFoundError:
                ok = False
        if not ok:
            raise ImageError(f"{self.what}: {shown}: the target is not a file of this layer")
        os.link(self.path(target), self.path(parts), follow_symlinks=False)

    def whiteout(self, parts: Parts, name: str) -> None:
        base = parts[-1]
        if base == OPAQUE:
            self.parents(parts, name)
            os.setxattr(self.path(parts[:-1]), OPAQUE_XATTR, b"y")
            return
        if base.startswith(WHITEOUT + WHITEOUT):  # aufs bookkeeping (.wh..wh.plnk …): not content
            return
        hidden = base[len(WHITEOUT):]
        if hidden in ("", ".", ".."):
            raise ImageError(f"{self.what}: whiteout {name[:100]!r} names {hidden!r}")
        target = parts[:-1] + (hidden,)
        self.parents(target, name)
        try:
            st = os.lstat(self.path(target))
        except FileNotFoundError:
            os.mknod(self.path(target), stat.S_IFCHR | 0o600, os.makedev(0, 0))
            self.whiteouts.add(target)
            return
        if stat.S_ISDIR(st.st_mode):  # this layer's own directory: it only hides the lower one
            os.setxattr(self.path(target), OPAQUE_XATTR, b"y")

    # --- attributes -----------------------------------------------------------------------
    def attrs_fd(self, fd: int, info: tarfile.TarInfo) -> None:
        os.fchown(fd, info.uid, info.gid)
        os.fchmod(fd, info.mode & 0o7777)  # after chown: chown clears setuid bits
        xattrs, dropped = _xattrs(info)
        self.stats.dropped_xattrs += dropped
        for k, v in xattrs.items():  # after chown: chown clears security.capability
            os.setxattr(fd, k, v)
        os.utime(fd, (info.mtime, info.mtime))

    def attrs_nofollow(self, parts: Parts, info: tarfile.TarInfo) -> None:
        os.chown(self.path(parts), info.uid, info.gid, follow_symlinks=False)
        os.utime(self.path(parts), (info.mtime, info.mtime), follow_symlinks=False)

    def finish(self) -> None:
        """Directories' attributes, deepest first; the root readable by everyone by default."""
        os.chmod(self.root, 0o755)
        for parts in sorted(self.dirs, key=len, reverse=True):
            fd = os.open(self.path(parts), os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                self.attrs_fd(fd, self.dirs[parts])
            finally:
                os.close(fd)


def check_end(end: int, total: int, last_data: int, what: str) -> None:
    """Only zeros (at least the two-block end marker) may follow a tar's last header at ``end``;
    ``total`` and ``last_data`` are the stream's length and the end of its last non-zero byte."""
    if last_data > end:
        raise ImageError(f"{what}: data after a broken tar header at byte {end} (garbage or a corrupt tar)")
    if total - end < END_MARKER:
        raise ImageError(f"{what}: the tar ends without its end marker (truncated)")
