"""What an imported image *is* to the backends: its layers and its runtime configuration.

Standard library only: declarations, the scenario loader and the guest builders read it
without the store's dependencies.

Layers are directories of the image store, unpacked once per layer digest and shared by
every image that has that layer.  They are already in overlayfs's own form (an OCI
whiteout ``.wh.NAME`` became a 0/0 character device ``NAME``; an opaque ``.wh..wh..opq``
became the ``trusted.overlay.opaque=y`` xattr on its directory), so a backend mounts
``lowerdir=<top>:…:<bottom>`` directly.  Nobody writes into a layer directory: each
instance gets its own thin writable upper, removed at its cleanup.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path


class ImageError(ValueError):
    """A bad or missing image (hostile archive, digest mismatch, unknown name): the message is
    the one line shown to the user (``isobench: error: …``, exit 2)."""


@dataclass(frozen=True)
class ImageConfig:
    """The runtime part of an OCI image configuration (``config`` of the config blob)."""

    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    #: ``Env`` as an ordered mapping (a later ``KEY=`` wins, as in the OCI spec)
    env: Mapping[str, str] = field(default_factory=dict)
    workdir: str = "/"
    #: ``User`` as written in the image: "", "uid", "uid:gid", "name" or "name:group"
    user: str = ""
    stop_signal: str | None = None
    #: ``ExposedPorts`` keys, e.g. ("6379/tcp",)
    exposed_ports: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)

    def argv(self) -> tuple[str, ...]:
        """What the image runs by default: Entrypoint + Cmd."""
        return self.entrypoint + self.cmd


@dataclass(frozen=True)
class Image:
    """One imported image: resolved by name or digest through the store."""

    name: str
    #: the manifest's digest, ``sha256:<hex>``: the identity recorded in every row and manifest
    digest: str
    #: the config blob's digest (the "image id" docker prints)
    config_digest: str
    #: unpacked layer directories, **bottom first** (the order of the manifest's ``layers``)
    layers: tuple[Path, ...]
    #: the uncompressed layers' digests (``rootfs.diff_ids``), bottom first
    diff_ids: tuple[str, ...]
    config: ImageConfig
    #: bytes of the unpacked layers on disk (shared layers counted once per image)
    size: int = 0
    architecture: str = "amd64"
    os: str = "linux"

    def lowerdir(self) -> str:
        """The overlayfs ``lowerdir=`` value: top layer first."""
        return ":".join(str(p) for p in reversed(self.layers))
