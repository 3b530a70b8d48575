"""An image's container root: the instance's own writable layer over the image's layers.

Made after ``t_launch`` (it is part of the instance, as an engine's per-container layer is):
the instance's directories (``runtimes.image.rundir.Upper``: upper, work and the empty
mountpoint, with the mountpoints the image lacks made in the upper), then its mount plan
(``mounts.image_plan``), which the container's child runs in its own mount namespace, the
native zygote's C child as the Python one.  The overlay exists only in that namespace: it is
gone with the container, and ``ContainerInstance`` removes the directories after.
"""

from __future__ import annotations

from runtimes.base import LaunchSpec, Timestamps, now_ns
from runtimes.container import mounts
from runtimes.image.rundir import Upper
from runtimes.image.workload import ImageWorkload
from runtimes.process import undone_on_failure


def make(spec: LaunchSpec, times: Timestamps, proc_hardening: bool = True) -> tuple[Upper, tuple[mounts.MountOp, ...]]:
    """The instance's upper and its mount plan (phase ``rootfs``); nothing is left behind when this fails."""
    t0 = now_ns()
    workload = spec.workload
    assert isinstance(workload, ImageWorkload)
    image = workload.image
    upper = Upper.create(spec.run_id, spec.instance, workload.missing_mountpoints())
    with undone_on_failure(upper.remove, spec.instance, (ValueError,)):
        plan = tuple(mounts.image_plan(upper.root, upper.data(image), proc_hardening=proc_hardening))
    times.phases["rootfs"] = now_ns() - t0
    return upper, plan
