"""The ``unshare`` reference backend: util-linux ``unshare(1)`` with the container's namespaces.

Not a runtime: no rootfs, no cgroup, no mounts beyond a fresh /proc.  It is
the yardstick for the built-in container's launch→ready, measured in the same
run: what creating the same namespaces costs with the standard tool.
"""

from __future__ import annotations

import shutil
from typing import Any

from runtimes.bare import BareBackend
from runtimes.declaration import Declaration

#: the namespaces the built-in container creates (pid, mount, uts, ipc, net; cgroup too)
UNSHARE_ARGS = ("--fork", "--pid", "--mount-proc", "--mount", "--uts", "--ipc", "--net", "--cgroup")


class UnshareBackend(BareBackend):
    name = "unshare"

    def __init__(self) -> None:
        # looked up once: a PATH search between t_launch and t_ready would be timed
        self.unshare = shutil.which("unshare")

    def available(self) -> str | None:
        if self.unshare is None:
            return "unshare(1) not found (fix: apt-get install util-linux)"
        return super().available()

    def command(self, argv: list[str]) -> list[str]:
        return [self.unshare or "unshare", *UNSHARE_ARGS, "--", *argv]

    def metadata(self) -> dict[str, Any]:
        return {"unshare_args": list(UNSHARE_ARGS)}


DECLARATION = Declaration(
    name="unshare",
    factory="runtimes.unshare:UnshareBackend",
    label="unshare(1) with the container's namespaces (a yardstick)",
    colour="#56B4E9",
)
