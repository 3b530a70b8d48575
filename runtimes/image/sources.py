"""Where an image comes from: an OCI image layout (directory or tar) or a docker-archive tar.

A source is only *read*: a tar is never extracted to disk, its members are read in place, so
nothing a hostile archive names can be written anywhere.  The result is a :class:`Plan`: the
verified manifest and config, and where each layer's blob lies in the source.  docker-archive
carries no manifest; the store writes an OCI one once the layers' digests are known.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import posixpath
import re
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from runtimes.image import names, oci
from runtimes.image.model import ImageError
from runtimes.image.streams import Caps, compression

#: members of an outer archive (an OCI layout holds a few per layer; garbage may claim millions)
MAX_MEMBERS = 100_000
CONTAINERD_NAME = "io.containerd.image.name"
T = TypeVar("T")


@dataclass(frozen=True)
class LayerSource:
    path: str
    #: the stored blob's digest and size as the manifest names them (None: not named, docker-archive)
    digest: str | None
    size: int | None


@dataclass(frozen=True)
class Plan:
    """What to import: a manifest (None: to be written), the config, the layers bottom first."""

    manifest: bytes | None
    config: bytes
    config_digest: str
    config_media_type: str
    parsed: oci.ParsedConfig
    layers: tuple[LayerSource, ...]
    default_name: str | None
    format: str


def _clean(path: str, what: str) -> str:
    """An archive-relative path without ``./``; ``..`` and absolute paths are refused."""
    if path.startswith("/") or "\x00" in path:
        raise ImageError(f"{what}: {path[:80]!r} is not a relative path inside the archive")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts or not parts:
        raise ImageError(f"{what}: {path[:80]!r} is not a path inside the archive")
    return "/".join(parts)


class Archive:
    """The files of a source, read-only: a directory or an uncompressed tar."""

    def open(self, path: str) -> tuple[BinaryIO, int]:
        raise NotImplementedError

    def has(self, path: str) -> bool:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def read(self, path: str, limit: int, what: str) -> bytes:
        f, size = self.open(path)
        with contextlib.closing(f):
            if size > limit:
                raise ImageError(f"{what} is {size} bytes, over the cap of {limit}")
            data = f.read(limit + 1)
        if len(data) != size:
            raise ImageError(f"{what}: read {len(data)} bytes, expected {size} (truncated?)")
        return data

    def blob_path(self, digest: str) -> str:
        alg, _, hexd = digest.partition(":")
        return f"blobs/{alg}/{hexd}"

    def read_blob(self, desc: oci.Descriptor, what: str) -> bytes:
        path = self.blob_path(desc.digest)
        if not self.has(path):
            raise ImageError(f"{what} {desc.digest} is missing from the source (no {path})")
        data = self.read(path, desc.size, f"{what} {names.short(desc.digest)}")
        actual = f"{desc.digest.partition(':')[0]}:{hashlib.new(desc.digest.partition(':')[0], data).hexdigest()}"
        if actual != desc.digest:
            raise ImageError(f"{what}: digest mismatch: the content is {actual}, the reference says {desc.digest}")
        return data


class DirArchive(Archive):
    def __init__(self, root: Path):
        self.root = root

    def has(self, path: str) -> bool:
        return (self.root / _clean(path, str(self.root))).is_file()

    def open(self, path: str) -> tuple[BinaryIO, int]:
        full = self.root / _clean(path, str(self.root))
        # a layout unpacked from somewhere else may hold links: none may lead out of it
        if not Path(os.path.realpath(full)).is_relative_to(os.path.realpath(self.root)):
            raise ImageError(f"{full} leads out of {self.root} (a symlink)")
        try:
            f = open(full, "rb")
        except OSError as e:
            raise ImageError(f"cannot read {full}: {e.strerror}") from None
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            f.close()
            raise ImageError(f"{full} is not a regular file")
        return f, st.st_size


class TarArchive(Archive):
    def __init__(self, path: Path):
        try:
            self.tar = tarfile.open(path, "r:")
            self.members: dict[str, tarfile.TarInfo] = {}
            for info in self.tar:
                if len(self.members) >= MAX_MEMBERS:
                    raise ImageError(f"{path}: more than {MAX_MEMBERS} entries; not an image archive")
                with contextlib.suppress(ImageError):  # an odd name nobody looks up is harmless
                    self.members[_clean(info.name, str(path))] = info
        except (tarfile.TarError, EOFError, UnicodeError) as e:
            raise ImageError(f"{path}: not a readable tar archive ({e})") from None
        except OSError as e:
            raise ImageError(f"cannot read {path}: {e.strerror or e}") from None
        self.path = path

    def close(self) -> None:
        self.tar.close()

    def _resolve(self, path: str) -> tarfile.TarInfo | None:
        """The regular member ``path`` names, through up to 16 links between members (docker save
        links duplicate layers); None when it names nothing (or a loop)."""
        info = self.members.get(path)
        for _ in range(16):
            if info is None or info.isreg():
                return info
            if info.issym():
                target = posixpath.join(posixpath.dirname(path), info.linkname)
            elif info.islnk():
                target = info.linkname
            else:
                return None
            try:
                path = _clean(posixpath.normpath(target), str(self.path))
            except ImageError:
                return None
            info = self.members.get(path)
        return None

    def has(self, path: str) -> bool:
        return self._resolve(path) is not None

    def open(self, path: str) -> tuple[BinaryIO, int]:
        info = self._resolve(_clean(path, str(self.path)))
        if info is None:
            raise ImageError(f"{self.path}: no file {path!r} in the archive")
        f = self.tar.extractfile(info)
        assert f is not None  # a regular member always has a reader
        return f, info.size  # type: ignore[return-value]


def check_source(source: Path) -> bool:
    """Whether ``source`` is a directory (True) or a regular file (False) that can be read; else
    an ImageError -- asked before the store is touched, so a bad source creates nothing there."""
    try:
        st = source.stat()
    except FileNotFoundError:
        raise ImageError(f"{source}: no such file or directory") from None
    except OSError as e:
        raise ImageError(f"cannot read {source}: {e.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        if not os.access(source, os.R_OK | os.X_OK):
            raise ImageError(f"cannot read {source}: permission denied")
        return True
    if not stat.S_ISREG(st.st_mode):
        raise ImageError(f"{source} is neither a directory nor a file")
    return False


def open_archive(source: Path) -> Archive:
    if check_source(source):
        return DirArchive(source)
    try:
        with open(source, "rb") as f:
            head = f.read(8)
    except OSError as e:
        raise ImageError(f"cannot read {source}: {e.strerror}") from None
    kind = compression(head)
    if kind:
        raise ImageError(f"{source} is {kind}-compressed: decompress it first "
                         f"(an image archive is a plain tar; its layers are compressed inside it)")
    return TarArchive(source)


def host_architecture() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}.get(machine, machine)


def _default_name(source: Path, ref: str | None) -> str | None:
    """A name for an image whose source says only a tag (skopeo's ``oci:DIR:TAG``) or nothing:
    the source's file name, lowercased, with that tag."""
    if ref and names.is_valid(ref) and ("/" in ref or ":" in ref):
        return names.normalise(ref)
    stem = re.sub(r"(\.oci)?(\.tar)?$", "", source.name.lower())
    stem = re.sub(r"[^a-z0-9._-]+", "-", stem).strip("._-")
    candidate = f"{stem}:{ref}" if ref else stem
    return names.normalise(candidate) if stem and names.is_valid(candidate) else None


def _pick(found: list[tuple[T, str | None]], ref: str | None, source: Path) -> tuple[T, str | None]:
    """The one image of ``found`` (each with its name) that ``ref`` names, or the only one."""
    if ref is not None:
        found = [(d, n) for d, n in found if n is not None and (n == ref or names.is_valid(ref) and names.is_valid(n)
                                                             and names.normalise(n) == names.normalise(ref))]
        if not found:
            raise ImageError(f"{source}: no image named {ref!r} in it")
    if len(found) != 1:
        listed = ", ".join(sorted({n or "(unnamed)" for _, n in found}))[:200]
        raise ImageError(f"{source} holds {len(found)} images ({listed}): choose one with --ref")
    return found[0]


def _manifests(archive: Archive, descs: tuple[oci.Descriptor, ...], caps: Caps, depth: int = 0
               ) -> list[tuple[oci.Descriptor, str | None]]:
    """Each image manifest the index lists, with its name; a nested index (several platforms)
    contributes the manifest for this host's platform."""
    out = []
    for d in descs:
        name = d.annotations.get(CONTAINERD_NAME) or d.annotations.get(oci.REF_NAME)
        if d.media_type in oci.INDEXES and depth < 2:
            inner = oci.parse_index(archive.read_blob(d, "image index"), "image index", caps.json_bytes)
            mine = [m for m in inner if m.platform.get("os", "linux") == "linux"
                    and m.platform.get("architecture", host_architecture()) == host_architecture()]
            out += [(m, name) for m, _ in _manifests(archive, tuple(mine[:1]), caps, depth + 1)]
        elif d.media_type in oci.MANIFESTS or not d.media_type:
            out.append((d, name))
    return out


def _oci_plan(archive: Archive, source: Path, ref: str | None, caps: Caps) -> Plan:
    if not archive.has("oci-layout"):
        raise ImageError(f"{source}: index.json without oci-layout: not an OCI image layout")
    layout = oci.load(archive.read("oci-layout", 4096, "oci-layout"), "oci-layout")
    if not isinstance(layout.get("imageLayoutVersion"), str):
        raise ImageError(f"{source}: oci-layout has no imageLayoutVersion")
    index = oci.parse_index(archive.read("index.json", caps.json_bytes, "index.json"), "index.json", caps.json_bytes)
    desc, ref_name = _pick(_manifests(archive, index, caps), ref, source)
    manifest_data = archive.read_blob(desc, "manifest")
    manifest = oci.parse_manifest(manifest_data, "manifest", caps.json_bytes, caps.blob_bytes, caps.layers)
    config = archive.read_blob(manifest.config, "image config")
    parsed = oci.parse_config(config, len(manifest.layers))
    layers = tuple(LayerSource(archive.blob_path(d.digest), d.digest, d.size) for d in manifest.layers)
    return Plan(manifest_data, config, manifest.config.digest, manifest.config.media_type, parsed, layers,
                _default_name(source, ref_name), "oci")


def _docker_plan(archive: Archive, source: Path, ref: str | None, caps: Caps) -> Plan:
    entries = oci.load(archive.read("manifest.json", caps.json_bytes, "manifest.json"), "manifest.json", list)
    if not entries or len(entries) > oci.MAX_ITEMS or not all(isinstance(e, dict) for e in entries):
        raise ImageError(f"{source}: manifest.json is not a list of images (docker-archive)")
    found: list[tuple[dict[str, Any], str | None]] = [(e, t) for e in entries for t in (oci.strings(e.get("RepoTags"), "manifest.json RepoTags") or (None,))]
    if ref is None and len(entries) == 1:
        found = found[:1]
    entry, tag = _pick(found, ref, source)
    config_path = _clean(oci.string(entry.get("Config"), "manifest.json Config", 4096), "manifest.json Config")
    config = archive.read(config_path, caps.json_bytes, "image config")
    paths = oci.strings(entry.get("Layers"), "manifest.json Layers")
    if len(paths) > caps.layers:
        raise ImageError(f"{source}: {len(paths)} layers, more than the cap of {caps.layers}")
    parsed = oci.parse_config(config, len(paths))
    layers = []
    for i, p in enumerate(paths):
        path = _clean(p, f"manifest.json Layers[{i}]")
        if not archive.has(path):
            raise ImageError(f"{source}: layer {i + 1} ({path}) is missing from the archive")
        layers.append(LayerSource(path, None, None))
    return Plan(None, config, f"sha256:{hashlib.sha256(config).hexdigest()}", oci.OCI_CONFIG, parsed,
                tuple(layers), _default_name(source, tag), "docker-archive")


def plan(archive: Archive, source: Path, ref: str | None, caps: Caps) -> Plan:
    if archive.has("index.json"):
        return _oci_plan(archive, source, ref, caps)
    if archive.has("manifest.json"):
        return _docker_plan(archive, source, ref, caps)
    raise ImageError(f"{source} is not an OCI image layout or a docker-archive "
                     "(it has neither index.json nor manifest.json)")
