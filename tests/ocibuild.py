"""Small OCI images and docker-archives made in a test, with ``tarfile`` (no stored binaries).

``layer(reg("etc/x", b"hi"), sym("bin", "usr/bin"), …)`` is a layer tar's bytes;
``write_oci(DIR, [layer, …])`` writes an OCI image layout around them (gzip by default),
``write_docker(PATH, [layer, …])`` a docker-archive, ``pack(DIR, PATH)`` an oci-archive.
Each returns what a test needs to tamper with the result (digests, blob paths).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path

import zstandard

Member = tuple[tarfile.TarInfo, bytes | None]


def _info(name: str, kind: bytes, mode: int, uid: int = 0, gid: int = 0, mtime: int = 1_700_000_000,
          xattrs: dict[str, str] | None = None) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.uid, info.gid, info.mtime = kind, mode, uid, gid, mtime
    info.pax_headers = {f"SCHILY.xattr.{k}": v for k, v in (xattrs or {}).items()}
    return info


def reg(name: str, data: bytes = b"", mode: int = 0o644, **kw) -> Member:  # type: ignore[no-untyped-def]
    info = _info(name, tarfile.REGTYPE, mode, **kw)
    info.size = len(data)
    return info, data


def dir_(name: str, mode: int = 0o755, **kw) -> Member:  # type: ignore[no-untyped-def]
    return _info(name, tarfile.DIRTYPE, mode, **kw), None


def sym(name: str, target: str) -> Member:
    info = _info(name, tarfile.SYMTYPE, 0o777)
    info.linkname = target
    return info, None


def hard(name: str, target: str) -> Member:
    info = _info(name, tarfile.LNKTYPE, 0o644)
    info.linkname = target
    return info, None


def dev(name: str, major: int = 1, minor: int = 3, block: bool = False) -> Member:
    info = _info(name, tarfile.BLKTYPE if block else tarfile.CHRTYPE, 0o666)
    info.devmajor, info.devminor = major, minor
    return info, None


def fifo(name: str) -> Member:
    return _info(name, tarfile.FIFOTYPE, 0o644), None


def layer(*members: Member) -> bytes:
    """A layer tar (PAX, as docker and buildah write them) holding ``members`` in order."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def compress(data: bytes, kind: str) -> bytes:
    if kind == "gzip":
        return gzip.compress(data, mtime=0)
    if kind == "zstd":
        return zstandard.ZstdCompressor().compress(data)
    return data


def sha256(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


LAYER_TYPES = {"gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
               "zstd": "application/vnd.oci.image.layer.v1.tar+zstd", "": "application/vnd.oci.image.layer.v1.tar"}


def config(diff_ids: list[str], **runtime: object) -> dict[str, object]:
    return {"architecture": "amd64", "os": "linux", "created": "2026-01-01T00:00:00Z",
            "config": {"Env": ["PATH=/usr/bin:/bin"], **runtime},
            "rootfs": {"type": "layers", "diff_ids": diff_ids}}


@dataclass(frozen=True)
class Built:
    path: Path
    manifest_digest: str
    config_digest: str
    layer_digests: tuple[str, ...]
    diff_ids: tuple[str, ...]

    def blob(self, digest: str) -> Path:
        return self.path / "blobs" / "sha256" / digest.partition(":")[2]


def _write_blob(root: Path, data: bytes) -> str:
    digest = sha256(data)
    (root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (root / "blobs" / "sha256" / digest.partition(":")[2]).write_bytes(data)
    return digest


def write_oci(root: Path, layers: list[bytes], compression: str = "gzip", ref: str | None = "latest",
              cfg: dict[str, object] | None = None, manifests: list[dict[str, object]] | None = None,
              **runtime: object) -> Built:
    """An OCI image layout at ``root`` (created or added to: ``manifests`` carries earlier ones)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    diff_ids = [sha256(t) for t in layers]
    blobs = [compress(t, compression) for t in layers]
    digests = [_write_blob(root, b) for b in blobs]
    cfg_bytes = json.dumps(cfg if cfg is not None else config(diff_ids, **runtime)).encode()
    cfg_digest = _write_blob(root, cfg_bytes)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg_digest,
                   "size": len(cfg_bytes)},
        "layers": [{"mediaType": LAYER_TYPES[compression], "digest": d, "size": len(b)}
                   for d, b in zip(digests, blobs, strict=True)]}).encode()
    m_digest = _write_blob(root, manifest)
    desc: dict[str, object] = {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                               "digest": m_digest, "size": len(manifest)}
    if ref is not None:
        desc["annotations"] = {"org.opencontainers.image.ref.name": ref}
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [*(manifests or []), desc]}))
    return Built(root, m_digest, cfg_digest, tuple(digests), tuple(diff_ids))


def index_manifests(root: Path) -> list[dict[str, object]]:
    return json.loads((root / "index.json").read_text())["manifests"]


def pack(src: Path, dest: Path) -> Path:
    """A directory as a plain tar (an OCI layout dir -> an oci-archive)."""
    with tarfile.open(dest, "w") as tar:
        for p in sorted(src.rglob("*")):
            tar.add(p, arcname=str(p.relative_to(src)), recursive=False)
    return dest


def tar_files(dest: Path, files: dict[str, bytes], symlinks: tuple[tuple[str, str], ...] = ()) -> Path:
    """A plain tar at ``dest`` holding ``files`` (name -> content), then ``symlinks`` (name, target)."""
    with tarfile.open(dest, "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in symlinks:
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return dest


def write_docker(dest: Path, layers: list[bytes], repo_tags: list[str] | None = None,
                 cfg: dict[str, object] | None = None, layer_paths: list[str] | None = None,
                 **runtime: object) -> Path:
    """A docker-archive (``docker save``'s format): manifest.json, config JSON, layer tars
    (``layer_paths`` replaces the manifest's paths to them)."""
    diff_ids = [sha256(t) for t in layers]
    cfg_bytes = json.dumps(cfg if cfg is not None else config(diff_ids, **runtime)).encode()
    files = {f"{hashlib.sha256(cfg_bytes).hexdigest()}.json": cfg_bytes}
    names = []
    for t in layers:
        names.append(f"{hashlib.sha256(t).hexdigest()}/layer.tar")
        files[names[-1]] = t
    files["manifest.json"] = json.dumps([{"Config": next(iter(files)), "RepoTags": repo_tags or [],
                                          "Layers": names if layer_paths is None else layer_paths}]).encode()
    return tar_files(dest, files)
