"""The image store on disk: content-addressed, written by rename, itself an OCI image layout.

::

    images/                       runtimes.rootfs.cache_dir() / "images"
      oci-layout, index.json      every stored image (ref.name = each of its names), so skopeo,
                                  podman and umoci read the store as ``oci:images:NAME``
      blobs/sha256/HEX            manifests, configs and layer blobs, as imported
      layers/sha256/HEX/          one per layer diff_id, shared by every image that has it:
        tree/                       the unpacked layer in overlayfs form (a lowerdir)
        layer.json                  its size, entries, implicit directories, skipped devices
      records/HEX.json            one per image (manifest digest): its layers, size, origin
      names.json                  name:tag -> manifest digest
      .lock                       held (flock) by whoever changes the store
      isobench-import-PID-…/      an import in progress (or one that was killed)

Nothing is ever written in place: each file is written beside its final name and renamed, each
layer unpacked in the import's own ``isobench-import-…`` directory and renamed into
``layers/`` only once verified, and a record appears last.  An import killed at any point
leaves only things no record names; the next import (which holds the lock, so every temporary
directory it sees is dead) and ``isobench cleanup`` remove them.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from runtimes import trust
from runtimes.image import oci
from runtimes.image.model import ImageError
from runtimes.image.names import digest_hex
from runtimes.naming import PREFIX

LAYOUT_VERSION = "1.0.0"
#: bump when an unpacked layer's form changes: older layer trees are then unpacked again
STORE_VERSION = 1
SCRATCH = f"{PREFIX}-import-"
TRASH = f"{PREFIX}-trash-"
_HEX = re.compile(r"^[a-f0-9]{64}$|^[a-f0-9]{128}$")


def atomic_write(path: Path, data: bytes) -> None:
    """``data`` at ``path`` whole or not at all (written beside it, then renamed)."""
    tmp = path.with_name(f".{path.name}.{PREFIX}-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def dump(doc: object) -> bytes:
    return (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode()


class Layout:
    def __init__(self, root: Path):
        self.root = root

    # --- paths ----------------------------------------------------------------------------
    def blob(self, digest: str) -> Path:
        alg, _, hexd = digest.partition(":")
        return self.root / "blobs" / alg / hexd

    def layer(self, diff_id: str) -> Path:
        alg, _, hexd = diff_id.partition(":")
        return self.root / "layers" / alg / hexd

    def tree(self, diff_id: str) -> Path:
        return self.layer(diff_id) / "tree"

    def record_path(self, digest: str) -> Path:
        return self.root / "records" / f"{digest_hex(digest)}.json"

    def has_layer(self, diff_id: str) -> bool:
        meta = self.layer(diff_id) / "layer.json"
        return meta.is_file() and json.loads(meta.read_text()).get("store_version") == STORE_VERSION

    def create(self) -> None:
        try:  # layers become the root of containers root starts: only root may change the store
            trust.ensure_dir(self.root, "the image store")
        except trust.Untrusted as e:
            raise ImageError(str(e)) from None
        for sub in ("blobs/sha256", "layers/sha256", "records"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        if not (self.root / "oci-layout").exists():
            atomic_write(self.root / "oci-layout", json.dumps({"imageLayoutVersion": LAYOUT_VERSION}).encode())

    # --- the lock and temporary directories ------------------------------------------------
    @contextlib.contextmanager
    def locked(self, blocking: bool = True) -> Iterator[bool]:
        """Hold the store's lock (flock: the kernel drops it when its holder dies, even by SIGKILL).
        Yields False, holding nothing, when ``blocking`` is off and someone else holds it."""
        self.create()
        fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def importing(self) -> Iterator[Path]:
        """The lock held, what killed imports left swept, and a scratch directory: one import's
        writing (its source already read and planned)."""
        with self.locked():
            self.sweep_scratch()  # we hold the lock: every temporary directory there is dead
            with self.scratch() as tmp:
                yield tmp

    @contextlib.contextmanager
    def scratch(self) -> Iterator[Path]:
        """A temporary directory inside the store (renames out of it stay on one filesystem),
        removed when the import ends, however it ends; a SIGKILL leaves it to :meth:`sweep`."""
        tmp = self.root / f"{SCRATCH}{os.getpid()}-{secrets.token_hex(4)}"
        tmp.mkdir(mode=0o700)
        try:
            yield tmp
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def sweep_scratch(self) -> list[str]:
        """Remove dead imports' temporary directories and half-deleted layers.  Call it only
        holding the lock: then no live import owns any of them."""
        removed = []
        for d in sorted(self.root.glob(f"{PREFIX}-*")):
            if d.name.startswith((SCRATCH, TRASH)) and d.is_dir() and not d.is_symlink():
                shutil.rmtree(d, ignore_errors=True)
                removed.append(f"image store temporary directory {d}")
        return removed

    def discard(self, path: Path) -> None:
        """Remove a directory so that no half of it is ever seen at its name: rename, then delete."""
        trash = self.root / f"{TRASH}{os.getpid()}-{secrets.token_hex(4)}"
        try:
            os.rename(path, trash)
        except FileNotFoundError:
            return
        shutil.rmtree(trash, ignore_errors=True)

    def commit_dir(self, tmp: Path, final: Path) -> None:
        """Move a finished directory into place; one already there (same content) is kept."""
        final.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(tmp, final)
        except OSError:
            if not final.is_dir():
                raise
            self.discard(tmp)

    def commit_file(self, tmp: Path, final: Path) -> None:
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():
            tmp.unlink()
        else:
            os.rename(tmp, final)

    # --- records, names and the OCI index --------------------------------------------------
    def names(self) -> dict[str, str]:
        try:
            doc = json.loads((self.root / "names.json").read_text())
        except FileNotFoundError:
            return {}
        return {str(k): str(v) for k, v in doc.items()}

    def write_names(self, mapping: dict[str, str]) -> None:
        atomic_write(self.root / "names.json", dump(dict(sorted(mapping.items()))))

    def record(self, digest: str) -> dict[str, Any] | None:
        try:
            return json.loads(self.record_path(digest).read_text())
        except FileNotFoundError:
            return None

    def records(self) -> dict[str, dict[str, Any]]:
        out = {}
        for p in sorted((self.root / "records").glob("*.json")):
            with contextlib.suppress(FileNotFoundError, ValueError):  # removed meanwhile / being written
                doc = json.loads(p.read_text())
                out[doc["digest"]] = doc
        return out

    def write_record(self, record: dict[str, Any]) -> None:
        atomic_write(self.record_path(record["digest"]), dump(record))

    def write_index(self) -> None:
        """index.json: each image once per name (skopeo and podman find ``oci:STORE:NAME`` by its
        ref.name annotation), and nameless images once, so every blob stays reachable."""
        records, by_digest = self.records(), dict[str, list[str]]()
        for name, digest in self.names().items():
            by_digest.setdefault(digest, []).append(name)
        manifests = []
        for digest, rec in records.items():
            base = {"mediaType": rec.get("manifest_media_type", oci.OCI_MANIFEST), "digest": digest,
                    "size": rec["manifest_size"]}
            refs: list[str | None] = [*by_digest.get(digest, [])] or [None]
            for ref in refs:
                manifests.append({**base, "annotations": {oci.REF_NAME: ref}} if ref else base)
        atomic_write(self.root / "index.json", json.dumps({"schemaVersion": 2, "manifests": manifests}).encode())

    # --- what no image uses ----------------------------------------------------------------
    def collect(self) -> list[str]:
        """Remove layers and blobs that no record names (an image removed, an import killed
        between moving its layers and writing its record).  Call it only holding the lock."""
        records = self.records().values()
        layers = {d for r in records for d in r["diff_ids"]}
        blobs = {d for r in records for d in (r["digest"], r["config_digest"], *r["blobs"])}
        removed = []
        for alg_dir in sorted((self.root / "layers").glob("*")):
            for d in sorted(alg_dir.iterdir()):
                if _HEX.match(d.name) and f"{alg_dir.name}:{d.name}" not in layers:
                    self.discard(d)
                    removed.append(f"image layer {alg_dir.name}:{d.name[:12]}")
        for alg_dir in sorted((self.root / "blobs").glob("*")):
            for f in sorted(alg_dir.iterdir()):
                if _HEX.match(f.name) and f"{alg_dir.name}:{f.name}" not in blobs:
                    f.unlink()
                    removed.append(f"image blob {alg_dir.name}:{f.name[:12]}")
        return removed
