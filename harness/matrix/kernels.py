"""Guest kernels by name: ``6.1``, ``6.12``, ``6.12-rt``, ``6.1-cloud`` or a path to a bzImage.

A series (and flavour) names Debian's ``linux-image-<series>.*-[flavour-]amd64``
packages.  The installed kernel of that series is used when there is one (its
modules are under /lib/modules already); otherwise the newest package in the
archive is fetched with ``apt-get download`` and unpacked with ``dpkg-deb -x``
into ``<cache>/kernels/<package>_<version>/`` (never installed into /boot),
with its module tree (``depmod`` run there), which virtme-ng finds beside the
image and packs into the guest's initramfs.  A path is used as is.

The cache is root's alone (``runtimes.trust``), and the image apt verified is
sealed with its SHA-256 when it is unpacked: a cached image whose bytes changed
since is refused with one line; one fetched before seals existed is fetched again.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from harness.errors import UserError
from runtimes import rootfs, trust
from runtimes.naming import PREFIX
from runtimes.userpaths import open_regular

#: the x86 boot protocol's header magic, and where it sits
BZIMAGE_MAGIC, BZIMAGE_MAGIC_AT = b"HdrS", 0x202
#: a kernel image larger than this is no kernel image
BZIMAGE_LIMIT = 512 << 20
SERIES = re.compile(r"^(?P<series>\d+\.\d+)(?:-(?P<flavour>rt|cloud))?$")


@dataclass(frozen=True)
class Kernel:
    spec: str  # as the user wrote it
    image: Path  # the bzImage to boot
    release: str  # uname -r inside the guest
    source: str  # "installed", "debian <package> <version>", or "path"

    @property
    def label(self) -> str:
        """Short name for series labels and directory names: the spec, or the release for a path."""
        return self.release if self.source == "path" else self.spec


def cache_root() -> Path:
    return rootfs.cache_dir() / "kernels"


def parse_spec(spec: str) -> tuple[str, str] | None:
    """(series, flavour) of a name such as ``6.12-rt``; None when ``spec`` is not one."""
    m = SERIES.match(spec.strip())
    return (m["series"], m["flavour"] or "") if m else None


def package_pattern(series: str, flavour: str) -> re.Pattern[str]:
    """Debian's image package names of a series: 6.1.0-NN-amd64, 6.12.NN+deb12-rt-amd64 …"""
    fl = f"{flavour}-" if flavour else ""
    return re.compile(rf"^linux-image-{re.escape(series)}\.[0-9][^ ]*?-{fl}amd64$")


def _natural(name: str) -> list[object]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def newest(names: list[str], series: str, flavour: str) -> str | None:
    pat = package_pattern(series, flavour)
    # the flavour-less pattern must not pick rt/cloud images: their names end in -rt-amd64 etc.
    found = [n for n in names if pat.match(n) and (flavour or not re.search(r"-(rt|cloud)-amd64$", n))]
    return max(found, key=_natural) if found else None


def release_of(image: Path) -> str:
    name = image.name
    return name.split("-", 1)[1] if name.startswith("vmlinuz-") else name


def installed(series: str, flavour: str, boot: Path = Path("/boot")) -> Kernel | None:
    names = [p.name.removeprefix("vmlinuz-") for p in boot.glob("vmlinuz-*")]
    pkg = newest([f"linux-image-{n}" for n in names], series, flavour)
    if pkg is None:
        return None
    release = pkg.removeprefix("linux-image-")
    if not Path(f"/lib/modules/{release}").is_dir():
        return None
    return Kernel(f"{series}-{flavour}" if flavour else series, boot / f"vmlinuz-{release}", release, "installed")


def installed_default(boot: Path = Path("/boot")) -> Kernel | None:
    """The newest kernel in /boot that has its modules (what CI boots for the v2 tests)."""
    images = [p for p in boot.glob("vmlinuz-*") if Path(f"/lib/modules/{release_of(p)}").is_dir()]
    if not images:
        return None
    image = max(images, key=lambda p: _natural(p.name))
    return Kernel(release_of(image), image, release_of(image), "installed")


def _run(*argv: str, cwd: Path | None = None) -> str:
    try:
        return subprocess.run(argv, check=True, capture_output=True, text=True, cwd=cwd).stdout
    except FileNotFoundError as e:
        raise UserError(f"kernel fetch needs {argv[0]} (Debian/Ubuntu only)") from e
    except subprocess.CalledProcessError as e:
        last = (e.stderr or e.stdout or "").strip().splitlines()
        raise UserError(f"{' '.join(argv[:3])}: {last[-1] if last else f'exit {e.returncode}'}") from e


def cached(image: Path, origin: dict[str, str]) -> bool:
    """Whether ``image`` is in the cache as apt verified it when it was fetched (False: fetch it);
    a ``UserError`` when it is there but changed since, or the cache is not root's alone."""
    if not (os.path.lexists(image) and trust.sealed(image)):
        return False
    try:
        trust.verify(image, origin, "the cached kernel")
    except trust.Untrusted as e:
        raise UserError(f"--kernels: {e}") from None
    return True


def fetch(series: str, flavour: str, cache: Path | None = None) -> Kernel:
    spec = f"{series}-{flavour}" if flavour else series
    names = _run("apt-cache", "pkgnames", f"linux-image-{series}.").split()
    pkg = newest(names, series, flavour)
    if pkg is None:
        raise UserError(f"--kernels: no Debian package for {spec!r} (apt-cache has no "
                        f"linux-image-{series}.*-{flavour + '-' if flavour else ''}amd64)")
    version = _run("apt-cache", "show", "--no-all-versions", pkg).partition("\nVersion: ")[2].split("\n")[0]
    release = pkg.removeprefix("linux-image-")
    try:
        root = trust.ensure_dir(cache or cache_root(), "the kernel cache")
    except trust.Untrusted as e:
        raise UserError(f"--kernels: {e}") from None
    dest = root / f"{pkg}_{version}"
    image = dest / "boot" / f"vmlinuz-{release}"
    origin = {"package": pkg, "version": version}
    if not cached(image, origin):  # not fetched yet, or fetched before kernels were sealed
        with tempfile.TemporaryDirectory(prefix=f"{PREFIX}-kernel-", dir=root) as tmp:
            _run("apt-get", "download", "-q", "-o", "APT::Sandbox::User=root", pkg, cwd=Path(tmp))
            deb = next(Path(tmp).glob("*.deb"))
            tree = Path(tmp) / "tree"
            _run("dpkg-deb", "-x", str(deb), str(tree))
            if (tree / "lib" / "modules" / release).is_dir():
                _run("depmod", "-b", str(tree), release)
            unpacked = tree / "boot" / f"vmlinuz-{release}"
            if not unpacked.is_file():
                raise UserError(f"--kernels: {pkg} {version} has no boot/vmlinuz-{release}")
            trust.seal(unpacked, origin)
            if dest.exists():  # an unsealed one: aside, so the name is missing only between two renames
                os.rename(dest, Path(tmp) / "old")
            os.rename(tree, dest)
    return Kernel(spec, image, release, f"debian {pkg} {version}")


def not_a_bzimage(path: Path) -> str | None:
    """Why ``path`` is no x86 kernel image (None: it is one): the boot protocol's ``HdrS`` magic
    at 0x202 (Documentation/arch/x86/boot.rst), so ``/etc/passwd`` is never handed to a guest."""
    try:
        fd = open_regular(path, BZIMAGE_LIMIT)
    except OSError as e:
        return e.strerror
    with os.fdopen(fd, "rb") as f:
        header = f.read(BZIMAGE_MAGIC_AT + len(BZIMAGE_MAGIC))
    if header[BZIMAGE_MAGIC_AT:] != BZIMAGE_MAGIC:
        return "not an x86 kernel image (no bzImage header: a vmlinuz, such as /boot/vmlinuz-*, is needed)"
    return None


def resolve(spec: str, cache: Path | None = None) -> Kernel:
    """The kernel a spec names; a ``UserError`` (one line) when it cannot be had."""
    path = Path(spec)
    if "/" in spec:
        if not path.is_file():
            raise UserError(f"--kernels: {spec}: no such kernel image")
        why = not_a_bzimage(path)
        if why is not None:
            raise UserError(f"--kernels: {spec}: {why}")
        return Kernel(spec, path.resolve(), release_of(path), "path")
    parsed = parse_spec(spec)
    if parsed is None:
        raise UserError(f"--kernels: unknown kernel {spec!r} (a series such as 6.1, 6.12, 6.12-rt, "
                        "6.1-cloud, or a path to a bzImage)")
    return installed(*parsed) or fetch(*parsed, cache=cache)


def resolve_all(specs: list[str], cache: Path | None = None) -> list[Kernel]:
    """Every kernel first, so a bad name fails before anything boots."""
    return [resolve(s, cache) for s in specs]
