"""Reading a blob once: its digest, its size, its decompression, each under a cap.

A layer is read in one pass: the stored bytes are hashed (the blob digest the manifest
names) and optionally copied into the store, decompressed (gzip, zstd or none, told by the
bytes' own magic, not by the media type a hostile manifest claims), hashed again (the
``diff_id`` the config names) and counted against a cap, so a small blob that decompresses
to terabytes stops at the cap instead of filling the disk.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
from dataclasses import dataclass
from typing import Any, BinaryIO

import zstandard

from runtimes.image.model import ImageError

GIB = 1 << 30
MIB = 1 << 20
#: environment variable that overrides :attr:`Caps.layer_bytes` (in MiB)
LAYER_CAP_ENV = "ISOBENCH_IMAGE_MAX_LAYER_MIB"


@dataclass(frozen=True)
class Caps:
    """Limits on what one import may make the store read and write."""

    #: uncompressed bytes of one layer (the tar stream) and of the files unpacked from it
    layer_bytes: int = 8 * GIB
    #: entries of one layer's tar
    entries: int = 1_000_000
    #: an index, manifest or config blob (JSON); real ones are a few KiB
    json_bytes: int = 4 * MIB
    #: a stored (compressed) layer blob as the manifest describes it
    blob_bytes: int = 16 * GIB
    #: layers of one image (docker's own limit is 127)
    layers: int = 128

    @classmethod
    def from_env(cls, layer_mib: int | None = None) -> Caps:
        if layer_mib is None and os.environ.get(LAYER_CAP_ENV):
            try:
                layer_mib = int(os.environ[LAYER_CAP_ENV])
            except ValueError:
                raise ImageError(f"{LAYER_CAP_ENV}={os.environ[LAYER_CAP_ENV]!r} is not a number of MiB") from None
        if layer_mib is None:
            return cls()
        if layer_mib <= 0:
            raise ImageError(f"the layer size cap must be a positive number of MiB, not {layer_mib}")
        return cls(layer_bytes=layer_mib * MIB)


class Hashing(io.RawIOBase):
    """Passes ``inner``'s bytes through, hashing and counting them; past ``cap`` bytes it stops
    with an ImageError (``what`` names the stream in that message).  ``copy`` receives every
    byte read (the blob's copy in the store)."""

    def __init__(self, inner: BinaryIO, algorithm: str, cap: int, what: str, copy: BinaryIO | None = None):
        super().__init__()
        self.inner, self.cap, self.what, self.copy = inner, cap, what, copy
        self.hash = hashlib.new(algorithm)
        self.algorithm = algorithm
        self.count = 0
        #: where the last non-zero byte ended (what follows a tar's end marker must be zeros)
        self.last_data = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer)
        data = self.inner.read(len(view))
        n = len(data)
        if n == 0:
            return 0
        stripped = len(data.rstrip(b"\0"))
        if stripped:
            self.last_data = self.count + stripped
        self.count += n
        if self.count > self.cap:
            raise ImageError(f"{self.what} is larger than the cap of {_size(self.cap)}")
        self.hash.update(data)
        if self.copy is not None:
            self.copy.write(data)
        view[:n] = data
        return n

    def drain(self) -> None:
        """Read to the end, so the digest covers every byte (a tar reader stops at its end marker)."""
        while self.read(1 << 20):
            pass

    def digest(self) -> str:
        return f"{self.algorithm}:{self.hash.hexdigest()}"


GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def compression(head: bytes) -> str:
    """"gzip", "zstd" or "" (a plain tar) from a blob's first bytes."""
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    return ""


def decompressed(raw: BinaryIO, kind: str) -> BinaryIO:
    """A reader of ``raw``'s content, decompressed as ``kind`` says."""
    if kind == "gzip":
        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    if kind == "zstd":
        # read_across_frames: a zstd layer may hold several frames (as a gzip one may hold members)
        return zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
    return raw


#: what a broken compressed stream raises, besides OSError/EOFError (gzip) and ZstdError
DECOMPRESSION_ERRORS: tuple[type[BaseException], ...] = (EOFError, zstandard.ZstdError, gzip.BadGzipFile)


def _size(n: int) -> str:
    return f"{n / GIB:g} GiB" if n >= GIB else f"{n / MIB:g} MiB"
