"""The image store: import images, look them up by name or digest, list and remove them.

``Store().get("redis:7")`` is what a backend calls: an :class:`~runtimes.image.model.Image`
whose layers are directories of the store, ready to be mounted as overlayfs lowerdirs.  The
layout on disk and its atomicity are described in :mod:`runtimes.image.layout`; one import's
steps in :mod:`runtimes.image.intake`; what a hostile layer cannot do in
:mod:`runtimes.image.unpack`.
"""

from __future__ import annotations

import builtins
import os
from pathlib import Path
from typing import Any

from runtimes import trust
from runtimes.image import intake, names, oci
from runtimes.image.layout import Layout
from runtimes.image.model import Image, ImageError
from runtimes.image.streams import Caps


def default_root() -> Path:
    from runtimes.rootfs import cache_dir

    return cache_dir() / "images"


class Store:
    def __init__(self, root: Path | None = None, caps: Caps | None = None):
        self.layout = Layout(root or default_root())
        self.caps = caps or Caps.from_env()

    @property
    def root(self) -> Path:
        return self.layout.root

    # --- reading ----------------------------------------------------------------------------
    def resolve(self, ref: str) -> tuple[str, str]:
        """(manifest digest, name) for ``ref``: ``name[:tag]``, or a prefix of a manifest or
        config digest (``sha256:`` optional, at least 4 hex digits) that only one image has."""
        mapping = self.layout.names()
        if names.is_valid(ref) and names.normalise(ref) in mapping:
            full = names.normalise(ref)
            return mapping[full], full
        if names.looks_like_digest_prefix(ref):
            hexd = ref.removeprefix("sha256:")
            hits = {d for d, r in self.layout.records().items()
                    if names.digest_hex(d).startswith(hexd) or names.digest_hex(r["config_digest"]).startswith(hexd)}
            if len(hits) > 1:
                raise ImageError(f"{ref!r} matches {len(hits)} images: give more digits")
            if hits:
                digest = hits.pop()
                return digest, self._name_of(digest, mapping)
        raise ImageError(f"no image {ref!r} in the store {self.root} "
                         "(`isobench image ls` lists them, `isobench image import` adds one)")

    def _trusted(self, name: str, trees: tuple[Path, ...]) -> None:
        """Layers are mounted under containers that root starts: the store and every layer tree
        must be root's alone (``runtimes.trust``), or the image is refused."""
        for where in (self.root, *trees):
            why = trust.untrusted_dir(where)
            if why is not None:
                raise ImageError(f"image {name} is refused: {why} (the store must be root's alone)")

    @staticmethod
    def _name_of(digest: str, mapping: dict[str, str]) -> str:
        return min((n for n, d in mapping.items() if d == digest), default=digest)

    def get(self, ref: str) -> Image:
        """The image ``ref`` names (see :meth:`resolve`); an ImageError says why not."""
        digest, name = self.resolve(ref)
        return self._image(digest, name)

    def _image(self, digest: str, name: str) -> Image:
        record = self.layout.record(digest)
        if record is None:
            raise ImageError(f"image {name} ({names.short(digest)}) has no record in the store: import it again")
        trees = tuple(self.layout.tree(d) for d in record["diff_ids"])
        missing = [t for t in trees if not t.is_dir()]
        if missing:
            raise ImageError(f"image {name}: layer {missing[0].parent.name[:12]} is missing from the store: "
                             "import it again")
        self._trusted(name, trees)
        try:
            data = self.layout.blob(record["config_digest"]).read_bytes()
        except FileNotFoundError:
            raise ImageError(f"image {name}: its config blob is missing from the store: import it again") from None
        if not names.matches(data, record["config_digest"]):  # what configures the process root runs
            raise ImageError(f"image {name}: its config blob no longer matches its digest "
                             f"{names.short(record['config_digest'])}: import it again")
        parsed = oci.parse_config(data, len(trees))
        return Image(name=name, digest=digest, config_digest=record["config_digest"], layers=trees,
                     diff_ids=tuple(record["diff_ids"]), config=parsed.config, size=int(record["size"]),
                     architecture=parsed.architecture, os=parsed.os)

    def list(self) -> list[Image]:
        """Every stored image once per name (nameless ones under their digest), sorted by name."""
        mapping = self.layout.names()
        out = [self._image(d, n) for n, d in sorted(mapping.items())]
        named = set(mapping.values())
        out += [self._image(d, d) for d in sorted(self.layout.records()) if d not in named]
        return out

    def record(self, image: Image) -> dict[str, Any]:
        """What the store knows about ``image`` beyond the contract: created, imported, source …"""
        record = self.layout.record(image.digest) or {}
        mapping = self.layout.names()
        return {**record, "names": sorted(n for n, d in mapping.items() if d == image.digest)}

    # --- changing -----------------------------------------------------------------------------
    def import_(self, source: str | os.PathLike[str], name: str | None = None, ref: str | None = None) -> Image:
        """Import an OCI image layout (directory or tar) or a docker-archive tar.  ``name``
        (default: the name the source carries) is checked before anything is read; ``ref``
        picks one image of a source that holds several."""
        if os.geteuid() != 0:
            raise ImageError("image import needs root: layers keep their owners, and overlayfs "
                             "whiteouts are device nodes and trusted.* xattrs")
        wanted = names.normalise(name) if name is not None else None
        path = Path(source)
        digest, stored = intake.run(self.layout, path, wanted, ref, self.caps)
        return self._image(digest, stored)

    def remove(self, ref: str) -> builtins.list[str]:
        """Remove a name (and the image, once no name is left); by digest, the image and all of
        its names.  Layers and blobs go only when no remaining image uses them.  Returns what
        was removed, one line each."""
        self.resolve(ref)  # a name the store lacks is an error before the store is made or locked
        with self.layout.locked():
            digest, name = self.resolve(ref)
            mapping = self.layout.names()
            by_name = names.is_valid(ref) and names.normalise(ref) in mapping
            dropped = [name] if by_name else sorted(n for n, d in mapping.items() if d == digest)
            for n in dropped:
                del mapping[n]
            removed = [f"name {n}" for n in dropped]
            self.layout.write_names(mapping)
            if digest not in mapping.values():
                self.layout.record_path(digest).unlink(missing_ok=True)
                removed.append(f"image {names.short(digest)}")
                removed += self.layout.collect()
            self.layout.write_index()
        return removed

    def sweep(self) -> builtins.list[str]:
        """What killed imports left: temporary directories, and layers and blobs that no image
        uses.  Does nothing while an import holds the store (its temporary files are live)."""
        if not self.root.is_dir():
            return []
        with self.layout.locked(blocking=False) as held:
            if not held:
                return []
            return self.layout.sweep_scratch() + self.layout.collect()


def get(ref: str) -> Image:
    """The image ``ref`` names in the default store."""
    return Store().get(ref)


def cleanup_leftovers(run_id: str | None = None) -> list[str]:
    """``isobench cleanup``'s sweep of the image store.  Imports belong to no run: with
    ``--run-id`` there is nothing of that run here."""
    if run_id is not None or os.geteuid() != 0:
        return []
    return Store().sweep()
