"""The ``bwrap`` peer: bubblewrap with the container's namespaces over the same rootfs, read-only.

Like ``unshare`` a startup peer, not a runtime: no cgroup of its own, no
seccomp filter, no capability drop, no device rules; bubblewrap makes the
namespaces the built-in container makes (pid, mount, uts, ipc, net, cgroup;
no user namespace, as ours), binds the shared workload rootfs read-only at
``/`` and mounts a fresh /proc, a /dev with the usual nodes and a /tmp tmpfs,
then runs the workload.  It is the floor of a sandbox start over a real root
filesystem: what the container's launch costs beyond it is the container's
own work (cgroup, seccomp, hardening).

The marker pipe on fd 3 reaches the workload as for ``bare``: bubblewrap
leaves inherited descriptors open.  ``--die-with-parent`` ties the sandbox to
the harness; with limits the workload's cgroup is made as ``bare`` makes it
(bubblewrap itself makes none).
"""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

from runtimes import rootfs
from runtimes.bare import BareBackend
from runtimes.declaration import Check, Declaration
from runtimes.workloads import WORKDIR

#: the container's namespaces (``runtimes.container.namespaces.DEFAULT``), as bubblewrap flags
NAMESPACE_ARGS = ("--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-net", "--unshare-cgroup")
#: the container's mounts over the read-only root: /proc, /dev (bwrap's nodes), /tmp
MOUNT_ARGS = ("--proc", "/proc", "--dev", "/dev", "--tmpfs", WORKDIR)


def find() -> str | None:
    return shutil.which("bwrap")


class BwrapBackend(BareBackend):
    name = "bwrap"

    def __init__(self) -> None:
        super().__init__()
        # looked up before any launch: a PATH search or a rootfs check in the window would be timed
        self.bwrap = find()
        self.root: str | None = None

    def available(self) -> str | None:
        if self.bwrap is None:
            return "bwrap not found (fix: apt-get install bubblewrap)"
        reason = super().available()
        if reason is not None:
            return reason
        try:
            self.root = str(rootfs.build())
        except rootfs.RootfsError as e:
            return f"cannot build the workload rootfs: {e}"
        return None

    def command(self, argv: list[str]) -> list[str]:
        if self.root is None:
            self.root = str(rootfs.build())
        return [self.bwrap or "bwrap", *NAMESPACE_ARGS, "--die-with-parent", "--ro-bind", self.root, "/",
                *MOUNT_ARGS, "--chdir", "/", "--", *argv]

    def metadata(self) -> dict[str, Any]:
        return {"path": self.bwrap, "version": version(self.bwrap) if self.bwrap else None,
                "args": [*NAMESPACE_ARGS, "--die-with-parent", "--ro-bind", "ROOTFS", "/", *MOUNT_ARGS],
                "rootfs": self.root}


def version(exe: str) -> str | None:
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=10, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.split()[-1] if out.split() else None


def checks(probe: bool = True) -> list[Check]:
    """``isobench doctor``: is bubblewrap installed (an optional peer)?"""
    exe = find()
    detail = f"{exe} {version(exe) or ''}".strip() if exe else "not installed (an optional peer: skipped)"
    return [Check("bwrap", exe is not None, detail, "apt-get install bubblewrap", essential=False)]


DECLARATION = Declaration(
    name="bwrap",
    factory="runtimes.bwrap:BwrapBackend",
    label="bubblewrap with the container's namespaces over the same rootfs, read-only (a sandbox floor)",
    colour="#AA4499",
    peer_of="container",
    optional=True,
    images=False,  # bubblewrap over an image's tree: not yet (it binds the catalog's rootfs)
    doctor="runtimes.bwrap:checks",
    tools={"bwrap": ("bwrap", "--version")},
)
