"""The OCI image JSON documents (index, manifest, config), parsed strictly.

Every field the store uses is checked for its type and a sane size, because an image is
untrusted input: a config with a gigabyte of environment, a number where a string belongs
or a diff_id list that does not match the layers is refused with one line naming the field.
Docker's equivalents (schema 2 manifest, manifest list, container config) are read too:
skopeo and podman write them into OCI layouts when told to keep the format.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from runtimes.image.model import ImageConfig, ImageError
from runtimes.image.names import check_digest

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
INDEXES = (OCI_INDEX, DOCKER_LIST)
MANIFESTS = (OCI_MANIFEST, DOCKER_MANIFEST)
CONFIGS = (OCI_CONFIG, DOCKER_CONFIG)
_LAYER_TYPE = re.compile(
    r"^application/vnd\.oci\.image\.layer\.(?:nondistributable\.)?v1\.tar(?:\+gzip|\+zstd)?$"
    r"|^application/vnd\.docker\.image\.rootfs\.(?:foreign\.)?diff\.tar(?:\.gzip)?$")
#: the media type of a layer by its compression, for manifests the store writes itself
LAYER_TYPES = {"": "application/vnd.oci.image.layer.v1.tar",
               "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
               "zstd": "application/vnd.oci.image.layer.v1.tar+zstd"}
REF_NAME = "org.opencontainers.image.ref.name"

#: what one exec may carry on Linux: MAX_ARG_STRLEN per string, and a total well under ARG_MAX
MAX_STRING = 128 * 1024
MAX_ARGV_ENV = 1 << 20
MAX_ITEMS = 4096
_SIGNAL = re.compile(r"^(?:SIG)?[A-Z0-9+-]{1,16}$|^[0-9]{1,3}$")
_PORT = re.compile(r"^[0-9]{1,5}(?:/(?:tcp|udp|sctp))?$")
_USER = re.compile(r"^[^:\x00]{0,255}(?::[^:\x00]{0,255})?$")


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    annotations: Mapping[str, str] = field(default_factory=dict)
    platform: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Manifest:
    config: Descriptor
    layers: tuple[Descriptor, ...]


@dataclass(frozen=True)
class ParsedConfig:
    config: ImageConfig
    diff_ids: tuple[str, ...]
    created: str
    architecture: str
    os: str


def load(data: bytes, what: str, kind: type = dict) -> Any:
    """A JSON object (or ``kind``) from untrusted bytes (one ImageError for every way that can fail)."""
    try:
        doc = json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise ImageError(f"{what} is not valid JSON ({str(e).splitlines()[0][:100]})") from None
    if not isinstance(doc, kind):
        raise ImageError(f"{what} is not a JSON {'object' if kind is dict else kind.__name__}")
    return doc


def string(value: object, what: str, limit: int = MAX_STRING) -> str:
    if not isinstance(value, str):
        raise ImageError(f"{what} is not a string ({type(value).__name__})")
    if len(value) > limit:
        raise ImageError(f"{what} is longer than {limit} characters ({len(value)})")
    if "\x00" in value:
        raise ImageError(f"{what} contains a NUL character")
    return value


def _list(value: object, what: str, limit: int = MAX_ITEMS) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ImageError(f"{what} is not a list ({type(value).__name__})")
    if len(value) > limit:
        raise ImageError(f"{what} has more than {limit} entries ({len(value)})")
    return value


def _dict(value: object, what: str, limit: int = MAX_ITEMS) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ImageError(f"{what} is not an object ({type(value).__name__})")
    if len(value) > limit:
        raise ImageError(f"{what} has more than {limit} entries ({len(value)})")
    return value


def strings(value: object, what: str) -> tuple[str, ...]:
    return tuple(string(v, f"{what}[{i}]") for i, v in enumerate(_list(value, what)))


def _string_map(value: object, what: str) -> dict[str, str]:
    return {string(k, f"{what} key", 1024): string(v, f"{what}[{k!r}]") for k, v in _dict(value, what).items()}


def descriptor(value: object, what: str, max_size: int) -> Descriptor:
    d = _dict(value, what, 64)
    size = d.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ImageError(f"{what}: size {size!r} is not a byte count")
    if size > max_size:
        raise ImageError(f"{what}: size {size} is over the cap of {max_size} bytes")
    platform = _dict(d.get("platform"), f"{what}.platform", 16)
    return Descriptor(media_type=string(d.get("mediaType", ""), f"{what}.mediaType", 256),
                      digest=check_digest(d.get("digest"), f"{what}.digest"), size=size,
                      annotations=_string_map(d.get("annotations"), f"{what}.annotations"),
                      platform={k: v for k, v in platform.items() if isinstance(v, str)})


def parse_index(data: bytes, what: str, max_json: int) -> tuple[Descriptor, ...]:
    doc = load(data, what)
    if doc.get("schemaVersion") != 2:
        raise ImageError(f"{what}: schemaVersion {doc.get('schemaVersion')!r} is not 2")
    return tuple(descriptor(m, f"{what}.manifests[{i}]", max_json)
                 for i, m in enumerate(_list(doc.get("manifests"), f"{what}.manifests")))


def parse_manifest(data: bytes, what: str, max_json: int, max_blob: int, max_layers: int) -> Manifest:
    doc = load(data, what)
    if doc.get("schemaVersion") != 2:
        raise ImageError(f"{what}: schemaVersion {doc.get('schemaVersion')!r} is not 2")
    media = doc.get("mediaType", OCI_MANIFEST)
    if media not in MANIFESTS:
        raise ImageError(f"{what}: mediaType {str(media)[:80]!r} is not an image manifest")
    config = descriptor(doc.get("config"), f"{what}.config", max_json)
    if config.media_type not in CONFIGS:
        raise ImageError(f"{what}: config mediaType {config.media_type[:80]!r} is not an image config")
    layers = tuple(descriptor(v, f"{what}.layers[{i}]", max_blob)
                   for i, v in enumerate(_list(doc.get("layers"), f"{what}.layers", max_layers)))
    for i, layer in enumerate(layers):
        if not _LAYER_TYPE.match(layer.media_type):
            raise ImageError(f"{what}.layers[{i}]: mediaType {layer.media_type[:80]!r} is not a layer type")
    return Manifest(config, layers)


def _env(value: object) -> dict[str, str]:
    env: dict[str, str] = {}
    for i, entry in enumerate(strings(value, "image config: Env")):
        key, eq, val = entry.partition("=")
        if not key or not eq:
            raise ImageError(f"image config: Env[{i}] {entry[:60]!r} is not KEY=VALUE")
        env[key] = val
    return env


def parse_config(data: bytes, layer_count: int) -> ParsedConfig:
    doc = load(data, "image config")
    os_name = string(doc.get("os", ""), "image config: os", 32)
    if os_name != "linux":
        raise ImageError(f"image config: os {os_name!r} is not linux")
    rootfs = _dict(doc.get("rootfs"), "image config: rootfs", 16)
    if rootfs.get("type") != "layers":
        raise ImageError(f"image config: rootfs.type {str(rootfs.get('type'))[:40]!r} is not 'layers'")
    diff_ids = tuple(check_digest(d, f"image config: rootfs.diff_ids[{i}]")
                     for i, d in enumerate(_list(rootfs.get("diff_ids"), "image config: rootfs.diff_ids")))
    if len(diff_ids) != layer_count:
        raise ImageError(f"image config names {len(diff_ids)} layer(s) (rootfs.diff_ids), "
                         f"the manifest {layer_count}")
    c = _dict(doc.get("config"), "image config: config", 64)
    entrypoint = strings(c.get("Entrypoint"), "image config: Entrypoint")
    cmd = strings(c.get("Cmd"), "image config: Cmd")
    env = _env(c.get("Env"))
    total = sum(len(s) + 1 for s in (*entrypoint, *cmd)) + sum(len(k) + len(v) + 2 for k, v in env.items())
    if total > MAX_ARGV_ENV:
        raise ImageError(f"image config: Entrypoint, Cmd and Env together are {total} bytes "
                         f"(more than {MAX_ARGV_ENV} cannot be executed)")
    workdir = string(c.get("WorkingDir") or "/", "image config: WorkingDir", 4096)
    if not workdir.startswith("/"):
        raise ImageError(f"image config: WorkingDir {workdir[:60]!r} is not an absolute path")
    user = string(c.get("User") or "", "image config: User", 512)
    if not _USER.match(user):
        raise ImageError(f"image config: User {user[:60]!r} is not USER[:GROUP]")
    stop = c.get("StopSignal")
    if stop is not None and not _SIGNAL.match(string(stop, "image config: StopSignal", 32)):
        raise ImageError(f"image config: StopSignal {stop!r} is not a signal")
    ports = tuple(_dict(c.get("ExposedPorts"), "image config: ExposedPorts"))
    for p in ports:
        if not isinstance(p, str) or not _PORT.match(p):
            raise ImageError(f"image config: ExposedPorts key {str(p)[:40]!r} is not PORT[/PROTO]")
    config = ImageConfig(entrypoint=entrypoint, cmd=cmd, env=env, workdir=workdir, user=user,
                         stop_signal=stop, exposed_ports=ports,
                         labels=_string_map(c.get("Labels"), "image config: Labels"))
    return ParsedConfig(config=config, diff_ids=diff_ids,
                        created=string(doc.get("created") or "", "image config: created", 64),
                        architecture=string(doc.get("architecture", ""), "image config: architecture", 32),
                        os=os_name)


def manifest_bytes(config: Descriptor, layers: list[Descriptor]) -> bytes:
    """An OCI manifest for an image that came without one (a docker-archive): canonical JSON,
    so the same archive always gets the same manifest digest."""
    def desc(d: Descriptor) -> dict[str, object]:
        return {"mediaType": d.media_type, "digest": d.digest, "size": d.size}

    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": desc(config),
           "layers": [desc(d) for d in layers]}
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
