"""The workload rootfs: the host's own busybox and stress-ng, copied with their libraries.

Bare metal runs the host's files; the container, OCI runtimes and VM guests run
these copies, placed at the same paths, so every backend executes the same
bytes.  The tree is cached under a hash of its inputs' content: a changed host
binary gives a new tree, an unchanged one is reused.

``build(extra=...)`` adds more host programs (the throughput tools: fio, iperf3,
sockperf) with their own library closures.  That is a tree of its own, keyed by
its own inputs: the base tree -- and so every other measurement's container root
and guest initramfs -- stays byte for byte what it was (fio alone brings ~80 MiB
of libraries, which a 256 MiB guest would feel).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path

from runtimes import trust
from runtimes.naming import PREFIX
from runtimes.workloads import BUSYBOX, STRESS_NG, AnyWorkload

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


def inputs(extra: Mapping[str, str] | None = None) -> list[str]:
    """Every file of the tree: the base binaries, the ``extra`` ones (path -> the Debian package
    that provides it, for the fix), and the libraries each loads."""
    wanted = {BUSYBOX: "busybox-static", STRESS_NG: "stress-ng", **(extra or {})}
    missing = [b for b in wanted if not os.path.exists(b)]
    if missing:
        packages = " ".join(dict.fromkeys(wanted[b] for b in missing))
        raise RootfsError(f"workload tools missing: {', '.join(missing)} (fix: apt-get install {packages})")
    files = list(wanted)
    for b in wanted:
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


def _populate(root: Path, files: list[str], nobody: bool = False) -> None:
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
    users, groups = ["root:x:0:0:root:/root:/bin/sh"], ["root:x:0:"]
    if nobody:  # stress-ng's exec stressor refuses root: the throughput tree runs it as nobody
        users.append("nobody:x:65534:65534:nobody:/nonexistent:/bin/sh")
        groups.append("nogroup:x:65534:")
    (root / "etc" / "passwd").write_text("\n".join(users) + "\n")
    (root / "etc" / "group").write_text("\n".join(groups) + "\n")
    # busybox applets as commands (`isobench exec -- ls /`); only names the tree lacks
    usr_bin = root / "usr" / "bin"
    for applet in _applets():
        if not os.path.lexists(usr_bin / applet):
            (usr_bin / applet).symlink_to("busybox")
    root.chmod(0o755)  # mkdtemp made it 0700


def _applets() -> list[str]:
    out = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True, check=False).stdout
    return [a for a in out.split() if a and "/" not in a]


def build(cache: Path | None = None, extra: Mapping[str, str] | None = None) -> Path:
    """Return the cached rootfs for the host's current binaries (with ``extra``, see
    ``inputs``), building it if needed."""
    files = inputs(extra)
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
        _populate(tmp, files, nobody=bool(extra))
        (tmp / ".complete").write_text("\n".join(files) + "\n")
        try:
            os.rename(tmp, root)
        except OSError:  # a concurrent build won the race
            shutil.rmtree(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root


def for_workload(workload: AnyWorkload | None, cache: Path | None = None) -> Path:
    """The tree a workload runs in: the base one, or the one with the tools it declares."""
    return build(cache, extra=workload.tools if workload is not None and workload.tools else None)


class Trees:
    """A backend's workload trees, looked up once each: ``build`` hashes every input file, so a
    backend asks here, before ``t_launch``, rather than per launch."""

    def __init__(self, cache: Path | None = None):
        self.cache = cache
        self._trees: dict[tuple[str, ...], Path] = {}

    def get(self, workload: AnyWorkload | None = None) -> Path:
        tools = tuple(sorted(workload.tools)) if workload is not None else ()
        if tools not in self._trees:
            self._trees[tools] = for_workload(workload, self.cache)
        return self._trees[tools]
