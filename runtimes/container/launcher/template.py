"""The zygote's prepared root: the part of the mount plan every container shares, built once.

The mount plan (``mounts.plan``) builds a container's root out of the host's
mount tree: ``unshare(CLONE_NEWNS)`` copies the host's whole mount table, and
``pivot_root`` plus the detach of the old root waits for an RCU grace period
(1.5 ms of a ~2 ms mount phase measured here; 10 ms under load).  The zygote
instead builds the shared part once per plan -- the rootfs bind, read-only,
pivoted into, the host tree detached -- in a mount namespace of its own, held
by an fd (nothing appears in the host's mount table).  Each container then
``setns``-es into it and unshares a private copy (one mount) and runs only its
own operations: /dev/shm, /proc and its masks (which bind the shared /dev's
null), /tmp.

/dev itself (its tmpfs, the six nodes made with mknod -- ``mounts.Device`` --,
the fd/std* links, the shm mountpoint, and the remount that makes it read-only:
``mounts.DEV_FINAL``) is part of the shared root, built once: read-only, no
workload makes or changes a node there (the device cgroup stands behind that
too).  /dev/shm stays a tmpfs per container.  ``split``
returns None for a plan with an operation it does not know, or a writable root
(an overlay per container): such a plan runs whole, as the fork launcher runs
every plan.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

from runtimes import syscalls as sc
from runtimes.container import mounts
from runtimes.container.mounts import (
    Bind,
    Device,
    Dir,
    MakePrivate,
    Mask,
    MountOp,
    PivotRoot,
    Proc,
    ReadOnly,
    Remount,
    Symlink,
    Tmpfs,
)

#: per-container operations that run unchanged below the prepared root (paths rebased)
_REBASABLE = (Proc, Tmpfs, Dir, Symlink, ReadOnly, Mask, Device)


@dataclass(frozen=True)
class Split:
    shared: tuple[MountOp, ...]  # run once, in the template namespace
    instance: tuple[MountOp, ...]  # run by each container, inside a copy of it


def _rebase(path: str, root: str) -> str | None:
    rel = os.path.relpath(path, root)
    return None if rel == "." or rel == ".." or rel.startswith("../") else "/" + rel


def split(plan: tuple[MountOp, ...]) -> Split | None:
    """The shared and per-container halves of ``plan``; None when it must run whole."""
    ops = list(plan)
    if len(ops) < 3 or not isinstance(ops[0], MakePrivate) or not isinstance(ops[-1], PivotRoot):
        return None
    root = ops[-1].new_root
    bind = ops[1]
    if not (isinstance(bind, Bind) and bind.src == bind.dst == root and not bind.readonly and not bind.flags):
        return None  # a writable root (overlay) or something new: per container
    shared: list[MountOp] = [ops[0], bind]
    dev: list[MountOp] = []
    rest: list[MountOp] = []
    dev_dir = os.path.join(root, "dev")
    for op in ops[2:-1]:
        if isinstance(op, Remount) and op.dst == root:
            shared.append(op)  # the root's flags: a property of the shared bind
            continue
        if _shared_dev(op, dev_dir):  # built once, read-only (see the module doc)
            shared.append(op)
            continue
        dst = getattr(op, "dst", None)
        new_dst = _rebase(dst, root) if isinstance(op, _REBASABLE) and isinstance(dst, str) else None
        if new_dst is None:
            return None
        new: MountOp = dataclasses.replace(op, dst=new_dst)  # type: ignore[type-var]
        if isinstance(op, Mask):  # its cover, the container's /dev/null, is below the root too
            null = _rebase(op.null, root)
            if null is None:
                return None
            new = dataclasses.replace(new, null=null)  # type: ignore[type-var]
        (dev if new_dst == "/dev" or new_dst.startswith("/dev/") else rest).append(new)
    shared.append(ops[-1])
    return Split(tuple(shared), tuple(dev + rest))


def _shared_dev(op: MountOp, dev_dir: str) -> bool:
    """/dev's tmpfs and what is made in it, but not the tmpfs mounted on /dev/shm."""
    dst = getattr(op, "dst", "")
    if isinstance(op, (Tmpfs, Remount)):
        return bool(dst == dev_dir)
    return isinstance(op, (Device, Symlink, Dir)) and os.path.dirname(dst) == dev_dir


def build(shared: tuple[MountOp, ...]) -> int:
    """Run ``shared`` in a new mount namespace (in a short-lived child); an fd that holds it.

    Called by the zygote (single-threaded).  The namespace lives while the fd is open:
    it goes with the zygote, and nothing of it is visible on the host.
    """
    ready_r, ready_w = os.pipe()
    hold_r, hold_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the builder
        try:
            os.close(ready_r)
            os.close(hold_w)
            sc.unshare(sc.CLONE_NEWNS)
            mounts.execute(list(shared))
            os.write(ready_w, b"ok")
            os.read(hold_r, 1)  # keep the namespace until the zygote has its fd
        except BaseException as e:  # noqa: BLE001 - reported to the zygote
            os.write(ready_w, f"{e}".encode()[:2000] or b"failed")
        os._exit(0)
    os.close(ready_w)
    os.close(hold_r)
    try:
        reply = os.read(ready_r, 4096)
        if reply != b"ok":
            raise OSError(0, f"cannot prepare the container root: {reply.decode(errors='replace')}")
        return os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(hold_w)  # the builder exits
        os.close(ready_r)
        os.waitpid(pid, 0)
