"""The ``unshare`` reference backend: util-linux ``unshare(1)`` with the container's namespaces.

Not a runtime: no rootfs, no cgroup, no mounts beyond a fresh /proc.  It is
the yardstick for the built-in container's launch→ready, measured in the same
run: what creating the same namespaces costs with the standard tool.  An image
workload runs in the image's read-only tree (``--root``, as ``bare``) with these
namespaces; unshare(1) leaves the new network namespace's ``lo`` down, so the
readiness probe brings it up when it enters the namespace (the container runtimes
bring it up themselves before the exec).
"""

from __future__ import annotations

from typing import Any

from runtimes.bare import BareBackend
from runtimes.declaration import Declaration

#: the namespaces the built-in container creates (pid, mount, uts, ipc, net; cgroup too)
UNSHARE_ARGS = ("--fork", "--pid", "--mount-proc", "--mount", "--uts", "--ipc", "--net", "--cgroup")


class UnshareBackend(BareBackend):
    name = "unshare"
    namespace_args = UNSHARE_ARGS
    own_netns = True

    def available(self) -> str | None:
        if self.unshare is None:
            return "unshare(1) not found (fix: apt-get install util-linux)"
        return super().available()

    def command(self, argv: list[str]) -> list[str]:
        return [self.unshare or "unshare", *UNSHARE_ARGS, "--", *argv]

    def metadata(self) -> dict[str, Any]:
        return {**super().metadata(), "unshare_args": list(UNSHARE_ARGS)}


DECLARATION = Declaration(
    name="unshare",
    factory="runtimes.unshare:UnshareBackend",
    label="unshare(1) with the container's namespaces (a yardstick)",
    colour="#56B4E9",
    peer_of="container",  # its yardstick: the same namespaces by the standard tool (as bwrap's)
    image_label="unshare(1) namespaces",
)
