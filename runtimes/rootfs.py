"""The workload rootfs: the host's own busybox and stress-ng, copied with their libraries.

Bare metal runs the host's files; the container, OCI runtimes and VM guests run
these copies, placed at the same paths, so every backend executes the same
bytes.  The tree is cached under a hash of its inputs' content: a changed host
binary gives a new tree, an unchanged one is reused.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from runtimes import trust
from runtimes.naming import PREFIX
from runtimes.workloads import BUSYBOX, STRESS_NG

#: bump when the layout below changes, so cached trees are rebuilt
LAYOUT_VERSION = "2"
BINARIES = (BUSYBOX, STRESS_NG)
#: empty directories every environment mounts something on
MOUNTPOINTS = ("proc", "sys", "dev", "tmp", "run", "etc", "root", "mnt", "oldroot")
#: the merged-/usr symlinks of the host, kept so paths match exactly
USR_LINKS = ("bin", "sbin", "lib", "lib64", "lib32", "libx32")


class RootfsError(RuntimeError):
    pass


def cache_dir() -> Path:
    base = os.environ.get("ISOBENCH_CACHE") or (
        "/var/cache/isobench" if os.geteuid() == 0 else
        os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), PREFIX))
    return Path(base)


def library_closure(binary: str) -> list[str]:
    """The shared objects ``binary`` loads (ldd), including the dynamic loader."""
    try:
        out = subprocess.run(["ldd", binary], capture_output=True, text=True, check=False).stdout
    except FileNotFoundError as e:
        raise RootfsError("ldd not found (install libc-bin)") from e
    libs = []
    for line in out.splitlines():
        m = re.search(r"(?:=>\s*)?(/\S+)\s+\(0x", line)
        if m:
            libs.append(m.group(1))
    return libs


def inputs() -> list[str]:
    missing = [b for b in BINARIES if not os.path.exists(b)]
    if missing:
        raise RootfsError(
            f"workload tools missing: {', '.join(missing)} (fix: apt-get install busybox-static stress-ng)")
    files = list(BINARIES)
    for b in BINARIES:
        files += library_closure(b)
    return sorted(dict.fromkeys(files))


def content_hash(files: list[str]) -> str:
    h = hashlib.sha256(LAYOUT_VERSION.encode())
    for f in files:
        h.update(f.encode() + b"\0")
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:16]


def _populate(root: Path, files: list[str]) -> None:
    for link in USR_LINKS:
        host = Path("/") / link
        if host.is_symlink():
            (root / link).symlink_to(os.readlink(host))
    for f in files:
        real = Path(os.path.realpath(f))
        dest = root / real.relative_to("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(real, dest)
        # keep the name the program is called by (e.g. a library's soname link)
        # (its directory resolved on the host, since /lib64 etc. are links here too)
        alias_dir = root / Path(os.path.realpath(os.path.dirname(f))).relative_to("/")
        alias = alias_dir / os.path.basename(f)
        if not alias.exists() and not alias.is_symlink():
            alias_dir.mkdir(parents=True, exist_ok=True)
            alias.symlink_to(real)
    for d in MOUNTPOINTS:
        (root / d).mkdir(exist_ok=True)
    (root / "etc" / "hostname").write_text(f"{PREFIX}\n")
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\n")
    # busybox applets as commands (`isobench exec -- ls /`); only names the tree lacks
    usr_bin = root / "usr" / "bin"
    for applet in _applets():
        if not os.path.lexists(usr_bin / applet):
            (usr_bin / applet).symlink_to("busybox")
    root.chmod(0o755)  # mkdtemp made it 0700


def _applets() -> list[str]:
    out = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True, check=False).stdout
    return [a for a in out.split() if a and "/" not in a]


def build(cache: Path | None = None) -> Path:
    """Return the cached rootfs for the host's current binaries, building it if needed."""
    files = inputs()
    cache = cache or cache_dir()
    try:  # every container's root: in a directory only root can change
        trust.ensure_dir(cache / "rootfs", "the rootfs cache")
    except trust.Untrusted as e:
        raise RootfsError(str(e)) from None
    root = cache / "rootfs" / content_hash(files)
    if (root / ".complete").exists():
        return root
    # Build beside the final place and rename: a crash never leaves a half tree in use.
    tmp = Path(tempfile.mkdtemp(prefix=f".{PREFIX}-rootfs-", dir=root.parent))
    try:
        _populate(tmp, files)
        (tmp / ".complete").write_text("\n".join(files) + "\n")
        try:
            os.rename(tmp, root)
        except OSError:  # a concurrent build won the race
            shutil.rmtree(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root
