"""Established OCI runtimes (runc, crun) as peers of the built-in container.

``OciBackend(name="oci:runc" | "oci:crun")`` runs the same workload rootfs with
the same namespaces, mounts and limits through the runtime's CLI;
``cleanup_leftovers(run_id)`` removes what a crashed run left in the runtimes'
state roots; ``find_runtime(name)`` is the one lookup of a runtime's binary
(doctor's too).  See ``runtimes.oci.backend`` (launching), ``runtimes.oci.bundle``
(config.json) and ``runtimes.oci.view`` (where the cgroups land).
"""

from __future__ import annotations

from runtimes.oci.backend import RUNTIMES, OciBackend, OciInstance, cleanup_leftovers, find_runtime

__all__ = ["RUNTIMES", "OciBackend", "OciInstance", "cleanup_leftovers", "find_runtime"]
