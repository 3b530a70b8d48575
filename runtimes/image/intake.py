"""One import: a source's layers read once, verified, unpacked, then moved into the store.

Every layer passes through one stream (blob digest → decompression → diff_id → tar → files),
into the import's own temporary directory.  Only when every layer's digest and diff_id match,
and no layer writes through a lower layer's symlink, are the layers and blobs renamed into
the store, and the record and name written last: a failed or killed import adds nothing an
image could use.  A layer the store already has is not unpacked again (nor read at all when
the store also has its blob).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import stat
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from runtimes.image import oci, sources
from runtimes.image.layers import merged
from runtimes.image.layout import STORE_VERSION, Layout, atomic_write, dump
from runtimes.image.model import ImageError
from runtimes.image.names import digest_hex
from runtimes.image.streams import DECOMPRESSION_ERRORS, Caps, Hashing, compression, decompressed
from runtimes.image.unpack import LayerStats, Unpacker, check_end

#: how a broken layer fails while it is read (an ImageError says what the store itself refused)
LAYER_ERRORS: tuple[type[BaseException], ...] = (tarfile.TarError, zlib.error, OSError, *DECOMPRESSION_ERRORS)
BROKEN_LAYER: tuple[type[BaseException], ...] = (ImageError, *LAYER_ERRORS)


@dataclass(frozen=True)
class Intake:
    """One layer as this import got it: where its blob (if new) and tree (if new) wait."""

    diff_id: str
    blob: oci.Descriptor
    new_blob: Path | None
    new_layer: Path | None
    implicit_dirs: tuple[str, ...]


def _implicit(layout: Layout, diff_id: str) -> tuple[str, ...]:
    return tuple(json.loads((layout.layer(diff_id) / "layer.json").read_text())["implicit_dirs"])


def _open_blob(archive: sources.Archive, src: sources.LayerSource, caps: Caps, what: str) -> tuple[BinaryIO, int]:
    if not archive.has(src.path):
        raise ImageError(f"{what} blob {src.digest or src.path} is missing from the source (no {src.path})")
    f, size = archive.open(src.path)
    if src.size is not None and size != src.size:
        f.close()
        raise ImageError(f"{what}: the blob is {size} bytes, the manifest says {src.size}")
    if size > caps.blob_bytes:
        f.close()
        raise ImageError(f"{what}: the blob is {size} bytes, over the cap of {caps.blob_bytes}")
    return f, size


def _read(f: BinaryIO, size: int, copy: BinaryIO | None, src: sources.LayerSource, diff_id: str,
          tree: Path | None, caps: Caps, what: str) -> tuple[Hashing, Hashing, str, LayerStats | None]:
    """One pass over a layer blob: hashed (and copied), decompressed, hashed again, unpacked
    into ``tree`` (None: the store has the tree; only the hashes are wanted)."""
    raw = Hashing(f, (src.digest or "sha256").partition(":")[0], size, f"{what} (stored)", copy)
    buffered = io.BufferedReader(raw, 1 << 20)
    kind = compression(buffered.peek(4)[:4])
    plain = Hashing(decompressed(buffered, kind), diff_id.partition(":")[0], caps.layer_bytes, f"{what} (uncompressed)")
    stats = None
    try:
        if tree is not None:
            tree.mkdir(parents=True)
            unpacker = Unpacker(tree, caps, what)
            stats = unpacker.run(plain)  # type: ignore[arg-type]
            plain.drain()
            check_end(unpacker.end, plain.count, plain.last_data, what)
        else:
            plain.drain()
        while buffered.read(1 << 20):  # what follows the compressed stream is hashed too
            pass
    except BROKEN_LAYER as e:
        # a tampered blob reads as broken: say so, when the rest of it shows it is
        _check_digest(raw, src.digest, what, drain=True)
        if isinstance(e, ImageError):
            raise
        raise ImageError(f"{what}: not a readable {kind or 'tar'} layer ({str(e)[:120] or type(e).__name__})") from None
    _check_digest(raw, src.digest, what)
    if plain.digest() != diff_id:
        raise ImageError(f"{what}: the uncompressed layer is {plain.digest()}, the config's rootfs.diff_ids says {diff_id}")
    return raw, plain, kind, stats


def _layer(layout: Layout, archive: sources.Archive, src: sources.LayerSource, diff_id: str,
           index: int, tmp: Path, caps: Caps) -> Intake:
    """Layer ``index`` of the source into ``tmp`` (its blob, its unpacked tree), whatever of it the
    store lacks; a layer whose tree and blob the store has is not read at all."""
    what = f"layer {index + 1}"
    have_tree = layout.has_layer(diff_id)
    if have_tree and src.digest is not None and layout.blob(src.digest).exists():
        return Intake(diff_id, oci.Descriptor("", src.digest, src.size or 0), None, None, _implicit(layout, diff_id))
    f, size = _open_blob(archive, src, caps, what)
    blob_tmp = tmp / f"blob-{index}"
    layer_tmp = None if have_tree else tmp / f"layer-{index}"
    keep = src.digest is None or not layout.blob(src.digest).exists()  # else only hashed, not copied again
    with f, open(blob_tmp if keep else os.devnull, "wb") as copy:
        raw, _, kind, stats = _read(f, size, copy if keep else None, src, diff_id,
                                    layer_tmp / "tree" if layer_tmp else None, caps, what)
    if layer_tmp is not None and stats is not None:
        atomic_write(layer_tmp / "layer.json", dump({
            "diff_id": diff_id, "store_version": STORE_VERSION, "size": stats.size, "entries": stats.entries,
            "skipped_devices": stats.skipped_devices, "dropped_xattrs": stats.dropped_xattrs,
            "implicit_dirs": stats.implicit_dirs}))
    implicit = tuple(stats.implicit_dirs) if stats is not None else _implicit(layout, diff_id)
    blob = oci.Descriptor(oci.LAYER_TYPES[kind], raw.digest(), size)
    new_blob = blob_tmp if keep and not layout.blob(blob.digest).exists() else None
    return Intake(diff_id, blob, new_blob, layer_tmp, implicit)


def _check_digest(raw: Hashing, expected: str | None, what: str, drain: bool = False) -> None:
    if expected is None:
        return
    if drain:
        try:
            raw.drain()
        except (ImageError, OSError):  # unreadable or over its size: the first error stands
            return
    if raw.digest() != expected:
        raise ImageError(f"{what}: digest mismatch: the blob is {raw.digest()}, the manifest says {expected}")


def symlink_below(trees_top_first: list[Path], parts: tuple[str, ...]) -> str | None:
    """The first prefix of ``parts`` that the merged (overlay) view of ``trees`` shows as a
    symlink, or None.  Walks one component at a time, so it never looks beneath a symlink."""
    for depth, (mode, _) in enumerate(merged(trees_top_first, parts), 1):
        if stat.S_ISLNK(mode):
            return "/".join(parts[:depth])
    return None


def _check_across_layers(layout: Layout, intakes: list[Intake]) -> None:
    """No layer's implicit directory (a parent it did not list) may be, below it, a symlink:
    unpacking never follows one, but a layer that writes through a link is hostile or broken."""
    trees: list[Path] = []
    for i, it in enumerate(intakes):
        for d in it.implicit_dirs:
            link = symlink_below(trees[::-1], tuple(d.split("/")))
            if link is not None:
                raise ImageError(f"layer {i + 1} writes beneath {link!r}, a symlink of a lower layer "
                                 "(a write through a link)")
        trees.append(it.new_layer / "tree" if it.new_layer else layout.tree(it.diff_id))


def run(layout: Layout, source: Path, name: str | None, ref: str | None, caps: Caps) -> tuple[str, str]:
    """Import ``source``; returns (manifest digest, the name it was stored under).  The source
    is read and planned first: one that is no image leaves the store untouched (not even made);
    then the store's lock is taken for the writing."""
    archive = sources.open_archive(source)
    try:
        plan = sources.plan(archive, source, ref, caps)
        name = name or plan.default_name
        if name is None:
            raise ImageError(f"{source} names no image: give it a name with --name")
        with layout.importing() as tmp:
            intakes = [_layer(layout, archive, src, diff_id, i, tmp, caps)
                       for i, (src, diff_id) in enumerate(zip(plan.layers, plan.parsed.diff_ids, strict=True))]
            _check_across_layers(layout, intakes)
            config = oci.Descriptor(plan.config_media_type, plan.config_digest, len(plan.config))
            manifest = plan.manifest or oci.manifest_bytes(config, [it.blob for it in intakes])
            digest = f"sha256:{hashlib.sha256(manifest).hexdigest()}"
            for data, d in ((manifest, digest), (plan.config, plan.config_digest)):
                if not layout.blob(d).exists():
                    atomic_write(tmp / f"json-{digest_hex(d)}", data)
                    layout.commit_file(tmp / f"json-{digest_hex(d)}", layout.blob(d))
            for it in intakes:
                if it.new_blob is not None:
                    layout.commit_file(it.new_blob, layout.blob(it.blob.digest))
                if it.new_layer is not None:
                    layout.commit_dir(it.new_layer, layout.layer(it.diff_id))
            layout.write_record(_record(layout, plan, digest, manifest, intakes, source))
            mapping = layout.names()
            mapping[name] = digest
            layout.write_names(mapping)
            layout.write_index()
    finally:
        archive.close()
    return digest, name


def _record(layout: Layout, plan: sources.Plan, digest: str, manifest: bytes, intakes: list[Intake],
            source: Path) -> dict[str, object]:
    metas = [json.loads((layout.layer(it.diff_id) / "layer.json").read_text()) for it in intakes]
    media = json.loads(manifest).get("mediaType", oci.OCI_MANIFEST)
    return {
        "digest": digest, "manifest_size": len(manifest), "manifest_media_type": media,
        "config_digest": plan.config_digest, "diff_ids": [it.diff_id for it in intakes],
        "blobs": [it.blob.digest for it in intakes], "size": sum(m["size"] for m in metas),
        "skipped_devices": sum(m["skipped_devices"] for m in metas),
        "dropped_xattrs": sum(m["dropped_xattrs"] for m in metas),
        "created": plan.parsed.created, "architecture": plan.parsed.architecture, "os": plan.parsed.os,
        "imported": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "source": str(source.resolve()), "format": plan.format, "store_version": STORE_VERSION,
    }
