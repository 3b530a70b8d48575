"""Established OCI runtimes (runc, crun) as peers of the built-in container.

``OciBackend(name="oci:runc" | "oci:crun")`` runs the same workload rootfs with
the same namespaces, mounts and limits through the runtime's CLI;
``cleanup_leftovers(run_id)`` removes what a crashed run left in the runtimes'
state roots; ``find_runtime(name)`` is the one lookup of a runtime's binary
(doctor's too).  See ``runtimes.oci.backend`` (launching), ``runtimes.oci.bundle``
(config.json) and ``runtimes.oci.view`` (where the cgroups land).

Importing this package imports only the two declarations (standard library);
the names of ``runtimes.oci.backend`` are reachable from here, imported on first use.
"""

from __future__ import annotations

from typing import Any

from runtimes.declaration import Declaration, Option


def _declare(runtime: str, colour: str) -> Declaration:
    return Declaration(
        name=f"oci:{runtime}",
        factory="runtimes.oci.backend:OciBackend",
        factory_args={"name": f"oci:{runtime}"},
        label=f"{runtime} running an OCI bundle of the same rootfs",
        colour=colour,
        peer_of="container",
        sweep="runtimes.oci.backend:cleanup_leftovers",
        doctor="runtimes.oci.checks:checks",
        # the bundle carries the built-in container's profile, resolved (runtimes.container.security.seccomp)
        options=(Option("seccomp", str, "default",
                        help="seccomp profile in the bundle: default (Docker's), unconfined, or a JSON file"),),
    )


RUNC = _declare("runc", "#009E73")
CRUN = _declare("crun", "#CC79A7")

_LAZY = ("RUNTIMES", "OciBackend", "OciInstance", "cleanup_leftovers", "find_runtime")


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from runtimes.oci import backend

        return getattr(backend, name)
    raise AttributeError(f"module 'runtimes.oci' has no attribute {name!r}")


__all__ = ["CRUN", "RUNC", *_LAZY]
