"""The guest's initramfs, built from the same workload rootfs every backend runs.

A guest boots straight into two concatenated cpio archives (the kernel unpacks
every archive in its initrd, one after the other):

1. a tiny, uncompressed per-workload archive holding ``/isobench/run``, the
   command line to run;
2. the compressed *base* archive: the workload rootfs (``runtimes.rootfs``)
   plus ``/init``, shared by every workload.

Both are cached by content hash under ``cache_dir()/vm/``; a launch only looks
a file up.  The uncompressed archive comes first, as Debian's early-microcode
archive does, because the end of a compressed stream is not always found
exactly by every kernel decompressor.

``/init`` (busybox sh) mounts /proc, /sys and /dev, reports guest-side facts as
``ISOBENCH RESULT guest_*`` lines on the serial console, runs the workload as
every backend does (``busybox sh -c SCRIPT`` with fd 3 on the console), writes
``ISOBENCH EXIT <rc>``, waits until the console has sent it, and powers off.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import os
import shlex
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from runtimes import rootfs
from runtimes.base import PREFIX, BackendError
from runtimes.workloads import BUSYBOX, EXIT, MARKER_FD, RESULT

#: bump when the archive layout or /init changes, so cached images are rebuilt
IMAGE_VERSION = "1"
CONSOLE = "/dev/ttyS0"
RUN_FILE = "isobench/run"
#: how many per-workload initrds to keep (each is a copy of the base, several MiB)
KEEP_INITRDS = 64

# The guest's PID 1.  Kept POSIX-sh/busybox-ash only.  Guest CPU time is the
# "cpu" line of /proc/stat in USER_HZ (100) ticks: busy = user + nice + system
# + irq + softirq + steal (guest time is already inside user).
INIT_HEAD = f"""#!{BUSYBOX} sh
B={BUSYBOX}
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
$B mount -t proc proc /proc
read up0 _ < /proc/uptime
# first, on the console init already has as stdout: the host timestamps its arrival
echo "{RESULT} guest_uptime_init=$up0"
$B mount -t sysfs sysfs /sys
$B mount -t devtmpfs devtmpfs /dev
$B mount -t tmpfs tmpfs /tmp
exec {MARKER_FD}>{CONSOLE}
say() {{ echo "{RESULT} $1" >&{MARKER_FD}; }}
ticks() {{ read _ u n s i w q sq st _ < /proc/stat; echo $((u+n+s+q+sq+st)); }}
cs() {{ echo $(($1/100)).$($B printf %02d $(($1%100))); }}
while read k v _; do
  case $k in MemTotal:) mt=$v ;; MemAvailable:) ma=$v ;; esac
done < /proc/meminfo
say guest_mem_total_kib=$mt
say guest_mem_available_kib=$ma
say guest_nproc=$($B nproc)
"""
#: the workload's start, after everything the guest prepares for it
INIT_START = """read up1 _ < /proc/uptime
say guest_uptime_workload=$up1
c0=$(ticks)
"""
#: after the workload: its CPU time by the guest's clock, OOM kills, EXIT, power-off
INIT_TAIL = f"""c1=$(ticks)
read up2 _ < /proc/uptime
say guest_uptime_exit=$up2
say guest_cpu_busy_s=$(cs $((c1-c0)))
# the guest's RAM is its memory limit: report whether its OOM killer acted
while read k v; do [ "$k" = oom_kill ] && say guest_oom_kill=$v; done < /proc/vmstat
echo "{EXIT} $rc" >&{MARKER_FD}
# stty sets the line with TCSETSW, which returns once every byte queued on the
# console has left the UART: without it, poweroff can lose the EXIT line.
$B stty -F {CONSOLE} -echo 2>/dev/null
$B poweroff -f
"""
INIT = INIT_HEAD + INIT_START + f"$B sh /{RUN_FILE} {MARKER_FD}>{CONSOLE} </dev/null\nrc=$?\n" + INIT_TAIL


@dataclass(frozen=True)
class Entry:
    """One cpio member: a directory, a regular file, a symlink or a device node."""

    name: str  # relative, no leading slash
    mode: int  # including the file type bits
    data: bytes = b""
    rdev: tuple[int, int] = (0, 0)


def _newc_header(ino: int, e: Entry) -> bytes:
    name = e.name.encode() + b"\0"
    fields = (ino, e.mode, 0, 0, 2 if stat.S_ISDIR(e.mode) else 1, 0, len(e.data), 0, 0,
              e.rdev[0], e.rdev[1], len(name), 0)
    head = b"070701" + b"".join(b"%08X" % f for f in fields) + name
    return head + b"\0" * (-len(head) % 4)


def write_newc(out: BinaryIO, entries: Iterable[Entry]) -> None:
    """Write a cpio "newc" archive (the initramfs format), owned by root, mtime 0."""
    ino = 0
    for ino, e in enumerate(entries, start=1):  # noqa: B007 (ino is used after the loop)
        out.write(_newc_header(ino, e))
        out.write(e.data + b"\0" * (-len(e.data) % 4))
    out.write(_newc_header(ino + 1, Entry("TRAILER!!!", 0)))


def tree_entries(root: Path) -> Iterator[Entry]:
    """Every file under ``root`` (parents first, sorted), as archive members."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel_dir = os.path.relpath(dirpath, root)
        for name in sorted(dirnames) + sorted(filenames):
            path = os.path.join(dirpath, name)
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            if rel == ".complete":  # the rootfs cache's own bookkeeping
                continue
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                yield Entry(rel, st.st_mode, os.readlink(path).encode())
            elif stat.S_ISDIR(st.st_mode):
                yield Entry(rel, st.st_mode)
            elif stat.S_ISREG(st.st_mode):
                with open(path, "rb") as fh:
                    yield Entry(rel, st.st_mode, fh.read())
        # a symlinked directory is listed in dirnames but must not be walked into
        dirnames[:] = [d for d in dirnames if not os.path.islink(os.path.join(dirpath, d))]


def base_entries(tree: Path) -> Iterator[Entry]:
    yield from tree_entries(tree)
    yield Entry("init", stat.S_IFREG | 0o755, INIT.encode())
    # the kernel opens /dev/console for init before /dev is mounted
    yield Entry("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1))


#: for ``isobench exec``: a command like ``ls /`` finds busybox's applets
APPLETS = f"{BUSYBOX} mkdir -p /isobench/bin && {BUSYBOX} --install -s /isobench/bin\nPATH=$PATH:/isobench/bin\n"


#: where a workload's kernel modules go in its run archive (loaded before it starts)
MODULES_DIR = "isobench/modules"


def run_entries(argv: list[str], applets: bool = False, modules: Sequence[tuple[str, bytes]] = ()) -> list[Entry]:
    """The run archive: ``argv`` as the run file, after loading ``modules`` ((name, .ko bytes), in
    load order: the devices the throughput measurement adds are modules of a distro kernel)."""
    load = "".join(f"{BUSYBOX} insmod /{MODULES_DIR}/{name}.ko || {{ echo 'isobench: cannot load module {name}' >&2; "
                   f"exit 90; }}\n" for name, _ in modules)
    # `exec` so that the command is the shell's only child, exactly as on the host
    run = (APPLETS if applets else "") + load + f"exec {shlex.join(argv)}\n"
    entries = [Entry("isobench", stat.S_IFDIR | 0o755), Entry(RUN_FILE, stat.S_IFREG | 0o644, run.encode())]
    if modules:
        entries.append(Entry(MODULES_DIR, stat.S_IFDIR | 0o755))
        entries += [Entry(f"{MODULES_DIR}/{name}.ko", stat.S_IFREG | 0o644, data) for name, data in modules]
    return entries


# -- compression ------------------------------------------------------------------------


def kernel_compressions(config: Path | None) -> set[str]:
    """Which initrd compressions the guest kernel unpacks (all common ones if unknown)."""
    if config is None:
        return {"gzip", "zstd", "none"}
    text = config.read_text(errors="replace")
    found = {"none"}
    for name, opt in (("gzip", "CONFIG_RD_GZIP=y"), ("zstd", "CONFIG_RD_ZSTD=y")):
        if opt in text:
            found.add(name)
    return found


def choose_compression(config: Path | None) -> str:
    """zstd when the kernel and host both can (it unpacks fastest under emulation), else gzip."""
    ok = kernel_compressions(config)
    if "zstd" in ok and shutil.which("zstd"):
        return "zstd"
    return "gzip" if "gzip" in ok else "none"


def _compress(raw: Path, out: Path, compression: str) -> None:
    if compression == "zstd":
        subprocess.run(["zstd", "-q", "-f", "-T0", "-10", str(raw), "-o", str(out)], check=True)
    elif compression == "gzip":
        with open(raw, "rb") as src, open(out, "wb") as fh, \
                gzip.GzipFile(fileobj=fh, mode="wb", compresslevel=6, mtime=0) as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    elif compression == "none":
        shutil.copyfile(raw, out)
    else:
        raise BackendError(f"unknown initramfs compression {compression!r} (gzip, zstd, none)")


# -- the cache --------------------------------------------------------------------------


def vm_cache(cache: Path | None = None) -> Path:
    d = (cache or rootfs.cache_dir()) / "vm"
    d.mkdir(parents=True, exist_ok=True)
    # QEMU runs as an unprivileged user (libvirt-qemu) and must read the images
    os.chmod(d, 0o755)
    return d


@contextlib.contextmanager
def _atomic(dest: Path) -> Iterator[Path]:
    """A temporary path beside ``dest``, renamed over it when the block succeeds."""
    fd, tmp = tempfile.mkstemp(prefix=f".{PREFIX}-", dir=dest.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o644)
        os.rename(tmp, dest)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def base_image(compression: str, cache: Path | None = None, tree: Path | None = None) -> Path:
    """The compressed rootfs + /init archive, built once per rootfs content and /init (``tree``:
    a workload tree other than the base one, ``rootfs.for_workload``)."""
    tree = tree or rootfs.build(cache)
    key = hashlib.sha256(f"{IMAGE_VERSION}\0{tree.name}\0{compression}\0{INIT}".encode()).hexdigest()[:16]
    return archive(vm_cache(cache) / f"base-{key}.cpio.{compression}", lambda: base_entries(tree), compression)


def archive(dest: Path, entries: Callable[[], Iterable[Entry]], compression: str) -> Path:
    """``dest``, a compressed archive of ``entries()``, unless it is already there (the name
    carries the key of its content)."""
    if dest.exists():
        return dest
    with _atomic(dest) as tmp:
        raw = tmp.with_suffix(".raw")
        try:
            with open(raw, "wb") as fh:
                write_newc(fh, entries())
            _compress(raw, tmp, compression)
        finally:
            with contextlib.suppress(FileNotFoundError):
                raw.unlink()
    return dest


def initrd_for(argv: list[str], base: Path, cache: Path | None = None, *, applets: bool = False,
               modules: Sequence[tuple[str, bytes]] = ()) -> Path:
    """The initrd a guest running ``argv`` boots with: the run archive, then ``base``."""
    return initrd_with(run_entries(argv, applets, modules), base, cache)


def initrd_with(entries: list[Entry], base: Path, cache: Path | None = None) -> Path:
    """The initrd of a guest: the small archive of ``entries`` (this workload's), then ``base``;
    cached by the content of both."""
    run = io.BytesIO()
    write_newc(run, entries)
    key = hashlib.sha256(base.name.encode() + b"\0" + run.getvalue()).hexdigest()[:16]
    dest = vm_cache(cache) / f"initrd-{key}.img"
    if dest.exists():
        os.utime(dest)  # most recently used: kept by the pruning below
        return dest
    with _atomic(dest) as tmp, open(tmp, "wb") as out, open(base, "rb") as src:
        out.write(run.getvalue())
        shutil.copyfileobj(src, out, 1 << 20)
    _prune(dest.parent)
    return dest


def _prune(d: Path, keep: int = KEEP_INITRDS) -> None:
    """Drop the least recently used per-workload initrds beyond ``keep``.

    QEMU reads its initrd into guest memory when it starts, so removing a file a
    running guest booted from is harmless."""
    files = sorted(d.glob("initrd-*.img"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in files[keep:]:
        with contextlib.suppress(FileNotFoundError):
            old.unlink()
