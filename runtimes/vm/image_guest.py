"""What an image workload's guest boots with: its initramfs and the devices holding its layers.

``files(kernel, spec, …)`` is what ``GuestBackend.machine`` calls for a ``LaunchSpec`` whose
workload is an image (``runtimes.image.workload.ImageWorkload``): everything is looked up or
built here, before ``t_launch`` -- the layer disks once per layer, the per-workload archive
once per process, limits and root kind (the shared base archive once per backend).

The root kind is the backend option ``image_root``: ``erofs`` (the default: one read-only
erofs disk per layer, ``runtimes.vm.layers``) or ``virtiofs`` (the store's layer directories
shared read-only through virtiofsd, ``runtimes.vm.virtiofs``).  ``docs/images.md`` gives the
measurement that chose the default.
"""

from __future__ import annotations

from pathlib import Path

from runtimes.base import BackendError, LaunchSpec
from runtimes.image.workload import ImageWorkload
from runtimes.readiness import ATTEMPT_TIMEOUT_S, FAST_S, INTERVAL_S, SLOW_INTERVAL_S
from runtimes.vm import image, image_init, layers
from runtimes.vm.machine import Device, SharedDir
from runtimes.workloads import GUEST_CGROUP

ROOT_KINDS = ("erofs", "virtiofs")
DEFAULT_ROOT = "erofs"


def root_kind(spec: LaunchSpec) -> str:
    kind = str(spec.extra.get("image_root", DEFAULT_ROOT))
    if kind not in ROOT_KINDS:
        raise BackendError(f"image_root must be one of {', '.join(ROOT_KINDS)}, got {kind!r}")
    return kind


def spec_bytes(workload: ImageWorkload, *, cgroup: bool) -> bytes:
    """The app starter's spec (``native/guest_run.c``): NUL-terminated ``key=value`` records."""
    p = workload.process
    ready = workload.ready
    records = [*(f"arg={a}" for a in p.argv), *(f"env={k}={v}" for k, v in p.env.items()),
               f"cwd={p.cwd}", f"uid={p.uid}", f"gid={p.gid}", f"groups={','.join(map(str, p.groups))}",
               f"ready={ready.kind if ready.kind in ('tcp', 'http') else 'none'}",
               f"interval_us={round(INTERVAL_S * 1e6)}", f"fast_us={round(FAST_S * 1e6)}",
               f"slow_us={round(SLOW_INTERVAL_S * 1e6)}", f"attempt_ms={round(ATTEMPT_TIMEOUT_S * 1e3)}",
               f"stop={workload.stop_signal}", f"grace_ms={round(workload.stop_grace_s * 1e3)}"]
    if ready.kind in ("tcp", "http"):
        records += [f"port={ready.port}", f"path={ready.path}"]
    if cgroup:
        records.append(f"cgroup={GUEST_CGROUP}")
    if any("\0" in r for r in records):
        raise BackendError(f"{workload.name}: a NUL byte in the app's argv or environment")
    return b"".join(r.encode() + b"\0" for r in records)


def files(kernel: str, spec: LaunchSpec, base: Path, cache: Path | None,
          share: SharedDir | None = None) -> tuple[Path, tuple[Device, ...]]:
    """(the initrd, the devices after the console) of the guest running ``spec``'s image on
    ``base`` (``image_init.base_image``); with ``share`` (virtiofs) the layers come through it
    instead of disks."""
    workload = spec.workload
    img = workload.image
    if not isinstance(workload, ImageWorkload) or img is None:
        raise BackendError(f"{spec.instance}: not an image workload")
    kind = "virtiofs" if share is not None else "erofs"
    if kind == "virtiofs":
        assert share is not None
        lower = tuple(f"/isobench/layers/{Path(t).relative_to(share.source)}" for t in reversed(img.layers))
        root = image_init.Root(kind, len(img.layers), lower)
        devices: tuple[Device, ...] = (share,)
    else:
        root = image_init.Root(kind, len(img.layers))
        devices = layers.disks(img, cache)
    limited = spec.limits.memory_mib is not None or spec.limits.pids is not None
    entries = image_init.workload_entries(kernel, root, spec_bytes(workload, cgroup=limited),
                                          workload.missing_mountpoints(), spec.limits.memory_mib, spec.limits.pids)
    return image.initrd_with(entries, base, cache), devices
