"""The initramfs of a guest that runs an image: busybox, modules, the app starter, and its /init.

The catalog's guests boot into an initramfs holding the whole workload rootfs
(``runtimes.vm.image``).  An image guest's initramfs holds only what it needs to reach the
image: static busybox, the guest kernel's modules for virtio, erofs or virtio-fs and overlay
(``runtimes.vm.modules``), the app starter (``native/guest_run.c``) and this /init.  The root
the app sees is the image's own layers (``runtimes.vm.layers``), read-only, with a writable
tmpfs upper, mounted by /init::

    /isobench/layers/0 … N-1   each layer, an erofs on its own virtio disk (serial isobench-layer-I)
      or /isobench/layers      the store's layer directories over virtio-fs (one read-only share)
    /isobench/rw               tmpfs: the instance's upper and overlay workdir (guest RAM)
    /isobench/root             overlay lowerdir=<top>:…:<bottom>, nosuid,nodev, with /proc, /sys
                               (read-only), /dev (devtmpfs), /dev/shm, /dev/pts mounted in it

Like the catalog's /init it reports the guest's facts (``INIT_HEAD``), then starts the app with
``isobench-guest-run`` (which chroots, takes the image's user, groups, working directory and
environment, copies the app's output to the console, probes tcp/http readiness on the guest's
own loopback, and obeys ``ISOBENCH STOP`` from the host), then reports ``ISOBENCH EXIT`` and
powers off (``INIT_TAIL``).  From the image's setup on, the kernel's messages are kept off the
console (``dmesg -n 1``): it carries the app's output, which ``log`` readiness reads.

A guest is two archives, as for the catalog: the per-workload one (``/isobench/spec``, the
process; ``/isobench/image.conf``, its layers and modules; ``/isobench/limits`` and
``/isobench/report``, the guest cgroup) and the shared base, cached by the hash of everything
in it.
"""

from __future__ import annotations

import hashlib
import shlex
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from runtimes.base import BackendError
from runtimes.image.rundir import MOUNTPOINTS
from runtimes.vm import modules as guest_modules
from runtimes.vm import native
from runtimes.vm.image import CONSOLE, INIT_HEAD, INIT_START, INIT_TAIL, Entry, archive, vm_cache
from runtimes.workloads import BUSYBOX, MARKER_FD, guest_cgroup_report, guest_cgroup_setup

#: bump when the archive layout or /init changes, so cached base archives are rebuilt
VERSION = "1"
GUEST_RUN = "/isobench/guest-run"
ROOT = "/isobench/root"
#: the virtio-fs tag of the layer share
FS_TAG = "isobench-layers"
#: a layer disk's serial is this followed by the layer's index (bottom = 0); virtio's limit is 20
SERIAL_PREFIX = "isobench-layer-"
#: the kernel reads mount options from one page
MAX_MOUNT_DATA = 4095

_SETUP = f"""# the console carries the app's output from here: the kernel's messages stay off it, and
# the host's requests (ISOBENCH STOP) are not echoed back
$B dmesg -n 1
$B stty -F {CONSOLE} -echo 2>/dev/null
. /isobench/image.conf
R={ROOT}
setup() {{
  for m in $MODULES; do $B insmod /lib/modules/$m.ko || return 1; done
  if [ "$ROOT_KIND" = erofs ]; then
    for d in /sys/block/vd*; do
      s=
      read s < $d/serial 2>/dev/null  # no newline at its end: read fails, yet sets s
      i=${{s#{SERIAL_PREFIX}}}
      [ -n "$s" ] && [ "$i" != "$s" ] || continue
      $B mkdir -p /isobench/layers/$i && $B mount -t erofs -o ro /dev/${{d##*/}} /isobench/layers/$i || return 1
    done
  else
    $B mkdir -p /isobench/layers && $B mount -t virtiofs -o ro {FS_TAG} /isobench/layers || return 1
  fi
  $B mkdir -p /isobench/rw $R && $B mount -t tmpfs -o mode=0755 isobench-rw /isobench/rw || return 1
  $B mkdir /isobench/rw/upper /isobench/rw/work || return 1
  $B mount -t overlay -o lowerdir=$LOWER,upperdir=/isobench/rw/upper,workdir=/isobench/rw/work,nosuid,nodev \\
    overlay $R || return 1
  for d in $MKDIRS; do $B mkdir -m ${{d#*:}} $R/${{d%%:*}} || return 1; done
  $B mount -t proc -o nosuid,nodev,noexec proc $R/proc || return 1
  $B mount -t sysfs -o ro,nosuid,nodev,noexec sysfs $R/sys || return 1
  $B mount -t devtmpfs -o nosuid devtmpfs $R/dev || return 1
  $B mkdir -p $R/dev/shm $R/dev/pts || return 1
  $B mount -t tmpfs -o nosuid,nodev,mode=1777 shm $R/dev/shm || return 1
  $B mount -t devpts -o nosuid,noexec,newinstance,ptmxmode=0666 devpts $R/dev/pts || return 1
  $B ip link set lo up || return 1
  [ ! -e /isobench/limits ] || $B sh /isobench/limits
}}
# what the image's root is made of, for the record: guest_mount_root, guest_mount_layers_I
mounts() {{
  while read src dst fs opts _; do
    case $dst in /isobench/layers*|$R) k=${{dst#/isobench/}}; say "guest_mount_${{k//\\//_}}=$fs $src $opts" ;; esac
  done < /proc/mounts
}}
if setup; then
  mounts
"""
_RUN = f"""  {GUEST_RUN} $R /isobench/spec {MARKER_FD}>{CONSOLE} <{CONSOLE}
  rc=$?
  [ ! -e /isobench/report ] || $B sh /isobench/report
else
  echo "isobench: the guest could not set up the image's root (see above)" >&{MARKER_FD}
  rc=125
fi
"""
INIT = INIT_HEAD + _SETUP + INIT_START + _RUN + INIT_TAIL


@dataclass(frozen=True)
class Root:
    """How the guest reaches the image's layers: ``kind`` erofs (one disk per layer, bottom
    first, mounted at /isobench/layers/I) or virtiofs (``lower``: the layers' paths in the share,
    top first)."""

    kind: str
    layers: int
    lower: tuple[str, ...] = ()

    def lowerdir(self) -> str:
        dirs = self.lower if self.kind == "virtiofs" else tuple(
            f"/isobench/layers/{i}" for i in reversed(range(self.layers)))
        value = ":".join(dirs)
        if len(value) > MAX_MOUNT_DATA - 200:  # the rest of the options need room too
            raise BackendError(f"an image of {self.layers} layers is too deep for one overlay mount in the guest")
        return value


def _static(path: Path) -> bytes:
    data = path.read_bytes()
    if b"ld-linux" in data[:4096]:  # PT_INTERP sits in the first page: a dynamic executable
        raise BackendError(f"{path} is not static: an image guest's initramfs has no C library "
                           "(fix: apt-get install busybox-static)")
    return data


def _base_entries(busybox: bytes, starter: bytes, mods: list[tuple[str, bytes]]) -> Iterator[Entry]:
    for d in ("bin", "dev", "proc", "sys", "tmp", "lib", "lib/modules", "isobench"):
        yield Entry(d, stat.S_IFDIR | 0o755)
    yield Entry(BUSYBOX.lstrip("/"), stat.S_IFREG | 0o755, busybox)
    yield Entry(GUEST_RUN.lstrip("/"), stat.S_IFREG | 0o755, starter)
    for name, data in mods:
        yield Entry(f"lib/modules/{name}.ko", stat.S_IFREG | 0o644, data)
    yield Entry("init", stat.S_IFREG | 0o755, INIT.encode())
    yield Entry("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1))


def base_image(kernel: str, compression: str, cache: Path | None = None) -> Path:
    """The shared archive of every image guest booting ``kernel``, built once per content."""
    d = vm_cache(cache)
    busybox = _static(Path(BUSYBOX))
    starter = native.guest_run(d).read_bytes()
    found: dict[str, guest_modules.Module] = {}
    for kind in guest_modules.NEEDS:
        found.update((m.name, m) for m in guest_modules.resolve(kernel, guest_modules.NEEDS[kind]))
    mods = [(name, guest_modules.load(m)) for name, m in sorted(found.items())]
    h = hashlib.sha256(f"{VERSION}\0{compression}\0{INIT}".encode())
    for part in (busybox, starter, *(n.encode() + b"\0" + data for n, data in mods)):
        h.update(hashlib.sha256(part).digest())
    dest = d / f"image-base-{h.hexdigest()[:16]}.cpio.{compression}"
    return archive(dest, lambda: _base_entries(busybox, starter, mods), compression)


def workload_entries(kernel: str, root: Root, spec: bytes, missing: tuple[str, ...],
                     memory_mib: int | None, pids: int | None) -> list[Entry]:
    """The per-workload archive: the app's spec, how to reach its layers, its guest cgroup."""
    load = [m.name for m in guest_modules.resolve(kernel, guest_modules.NEEDS[root.kind])]
    conf = {"MODULES": " ".join(load), "ROOT_KIND": root.kind, "LAYERS": str(root.layers),
            "LOWER": root.lowerdir(), "MKDIRS": " ".join(f"{d}:{MOUNTPOINTS.get(d, 0o755):o}" for d in missing)}
    text = "".join(f"{k}={shlex.quote(v)}\n" for k, v in conf.items())
    out = [Entry("isobench", stat.S_IFDIR | 0o755), Entry("isobench/image.conf", stat.S_IFREG | 0o644, text.encode()),
           Entry("isobench/spec", stat.S_IFREG | 0o644, spec)]
    setup = guest_cgroup_setup(memory_mib, pids)
    if setup is not None:
        out += [Entry("isobench/limits", stat.S_IFREG | 0o644, f"{setup}\n".encode()),
                Entry("isobench/report", stat.S_IFREG | 0o644, f"{guest_cgroup_report()}\n".encode())]
    return out

