"""Building an OCI image from this host's files with umoci, reproducibly.

An image is described as data (:class:`ImageSpec`: layers of host files, trees, links and
generated files, plus the runtime config); :func:`build` stages each layer into an umoci
bundle and lets ``umoci repack`` cut it into a layer, then ``umoci config`` writes the config.
Every staged file's time is set to one fixed epoch (``SOURCE_DATE_EPOCH``, default
2023-11-14), and umoci's history and ``created`` fields too, so the same inputs give the same
layer digests and the same manifest digest on every machine with the same packages.
(``umoci insert`` would be shorter, but Debian's umoci 0.4.7 writes its layers without the
tar end marker — umoci issue 436 — which the store refuses as truncated.)
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from runtimes.image.model import ImageError
from runtimes.naming import PREFIX
from runtimes.rootfs import library_closure

#: bump when the staging below changes: the inputs' key then changes, and images are rebuilt
BUILD_VERSION = "1"
DEFAULT_EPOCH = 1_700_000_000
TAG = "latest"


def epoch() -> int:
    return int(os.environ.get("SOURCE_DATE_EPOCH") or DEFAULT_EPOCH)


@dataclass(frozen=True)
class LayerSpec:
    #: what the layer is, for its history entry
    name: str
    #: host files, copied to their real path with the name they are called by as a symlink
    #: (how runtimes.rootfs copies binaries and their libraries)
    files: tuple[str, ...] = ()
    #: (host directory, path in the image, names to leave out) copied whole, symlinks as symlinks
    trees: tuple[tuple[str, str, tuple[str, ...]], ...] = ()
    #: (path in the image, symlink target)
    links: tuple[tuple[str, str], ...] = ()
    #: (path in the image, mode) of directories
    dirs: tuple[tuple[str, int], ...] = ()
    #: (path in the image, content, mode) of generated files
    contents: tuple[tuple[str, bytes, int], ...] = ()


@dataclass(frozen=True)
class ImageSpec:
    name: str
    layers: tuple[LayerSpec, ...]
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[str, ...] = ("PATH=/usr/local/bin:/usr/bin:/bin",)
    workdir: str = "/"
    user: str = ""
    exposed_ports: tuple[str, ...] = ()
    stop_signal: str = ""
    labels: tuple[tuple[str, str], ...] = field(default_factory=tuple)


def _hash_path(h: hashlib._Hash, path: Path, rel: str) -> None:
    st = os.lstat(path)
    h.update(f"{rel}\0{st.st_mode:o}\0".encode())
    if path.is_symlink():
        h.update(os.readlink(path).encode())
    elif path.is_file():
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)


def _tree_entries(src: Path, skip: tuple[str, ...]) -> list[Path]:
    out = []
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames[:] = sorted(d for d in dirnames if d not in skip)
        out += [Path(dirpath, n) for n in sorted([*dirnames, *filenames]) if n not in skip]
    return out


def inputs_key(spec: ImageSpec) -> str:
    """A hash of everything the image is made of: its files' content, its config, the epoch."""
    # where a tree lies on this host is not part of the image: its place in the image and content are
    located = [dataclasses.replace(layer, trees=tuple(("", dest, skip) for _, dest, skip in layer.trees))
               for layer in spec.layers]
    h = hashlib.sha256(f"{BUILD_VERSION}\0{epoch()}\0{dataclasses.replace(spec, layers=tuple(located))!r}".encode())
    for layer in spec.layers:
        for f in layer.files:
            _hash_path(h, Path(os.path.realpath(f)), f)
        for src, _, skip in layer.trees:
            for p in _tree_entries(Path(src), skip):
                _hash_path(h, p, str(p.relative_to(src)))
    return h.hexdigest()[:16]


def _copy_file(root: Path, host: str) -> None:
    real = Path(os.path.realpath(host))
    dest = root / real.relative_to("/")
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(real, dest)
    alias = root / Path(os.path.realpath(os.path.dirname(host))).relative_to("/") / os.path.basename(host)
    if not os.path.lexists(alias):
        alias.parent.mkdir(parents=True, exist_ok=True)
        alias.symlink_to(real)


def stage(layer: LayerSpec, root: Path) -> None:
    """Put ``layer``'s files into ``root`` (a bundle's rootfs holding the layers below)."""
    for path, mode in layer.dirs:
        (root / path.lstrip("/")).mkdir(parents=True, exist_ok=True)
        os.chmod(root / path.lstrip("/"), mode)
    for path, target in layer.links:
        (root / path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        (root / path.lstrip("/")).symlink_to(target)
    for f in layer.files:
        _copy_file(root, f)
    for src, dest, skip in layer.trees:
        shutil.copytree(src, root / dest.lstrip("/"), symlinks=True, dirs_exist_ok=True,
                        ignore=lambda _d, names, skip=skip: [n for n in names if n in skip])
    for path, content, mode in layer.contents:
        (root / path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        (root / path.lstrip("/")).write_bytes(content)
        os.chmod(root / path.lstrip("/"), mode)


def _settle(root: Path, when: int) -> None:
    """Every entry's times set to ``when`` (symlinks themselves, not their targets)."""
    for dirpath, dirnames, filenames in os.walk(root):
        for n in [*dirnames, *filenames]:
            os.utime(os.path.join(dirpath, n), (when, when), follow_symlinks=False)
    os.utime(root, (when, when))


def _umoci(*args: str) -> None:
    try:
        proc = subprocess.run(["umoci", *args], capture_output=True, text=True, timeout=600)
    except FileNotFoundError:
        raise ImageError("umoci not found (isobench doctor --fix installs it)") from None
    if proc.returncode != 0:
        raise ImageError(f"umoci {args[0]} failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")


def _config_args(spec: ImageSpec) -> list[str]:
    args = [f"--config.workingdir={spec.workdir}", f"--config.user={spec.user}"]
    args += [f"--config.entrypoint={a}" for a in spec.entrypoint] + [f"--config.cmd={a}" for a in spec.cmd]
    args += [f"--config.env={e}" for e in spec.env] + [f"--config.exposedports={p}" for p in spec.exposed_ports]
    args += [f"--config.label={k}={v}" for k, v in spec.labels]
    return args + ([f"--config.stopsignal={spec.stop_signal}"] if spec.stop_signal else [])


def build(spec: ImageSpec, dest: Path) -> Path:
    """An OCI image layout at ``dest`` holding ``spec`` as ``dest:latest`` (built beside it, then
    renamed: a killed build leaves only an ``isobench-imagebuild-…`` directory)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    when = epoch()
    iso = dt.datetime.fromtimestamp(when, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    work = Path(tempfile.mkdtemp(prefix=f"{PREFIX}-imagebuild-", dir=dest.parent))
    try:
        layout, bundle, ref = work / "oci", work / "bundle", f"{work / 'oci'}:{TAG}"
        _umoci("init", "--layout", str(layout))
        _umoci("new", "--image", ref)
        _umoci("unpack", "--image", ref, str(bundle))
        for layer in spec.layers:
            stage(layer, bundle / "rootfs")
            _settle(bundle / "rootfs", when)
            _umoci("repack", "--refresh-bundle", f"--history.created={iso}",
                   f"--history.created_by=isobench images: {layer.name}", "--image", ref, str(bundle))
        _umoci("config", "--image", ref, f"--created={iso}", f"--history.created={iso}", "--author=isobench",
               "--history.created_by=isobench images: config", *_config_args(spec))
        _umoci("gc", "--layout", str(layout))
        try:
            os.rename(layout, dest)
        except OSError:
            if not (dest / "index.json").is_file():  # else a concurrent build of the same inputs won
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return dest


def closure(*binaries: str) -> list[str]:
    """The binaries and every shared object they load, sorted (missing ones are skipped)."""
    files = [b for b in binaries if os.path.exists(b)]
    for b in list(files):
        files += library_closure(b)
    return sorted(dict.fromkeys(files))
