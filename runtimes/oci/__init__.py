"""Established OCI runtimes (runc, crun, gVisor's runsc) as peers of the built-in container.

``OciBackend(name="oci:runc" | "oci:crun" | "oci:runsc")`` runs the same workload
rootfs with the same namespaces, mounts and limits through the runtime's CLI
(``runtimes.oci.cli``; runsc's differences: ``runtimes.oci.runsc``);
``cleanup_leftovers(run_id)`` removes what a crashed run left in the runtimes'
state roots; ``find_runtime(name)`` is the one lookup of a runtime's binary
(doctor's too).  See ``runtimes.oci.backend`` (launching), ``runtimes.oci.bundle``
(config.json) and ``runtimes.oci.view`` (where the cgroups land).

Importing this package imports only the declarations (standard library);
the names of ``runtimes.oci.backend`` are reachable from here, imported on first use.
"""

from __future__ import annotations

from typing import Any

from runtimes.declaration import Declaration, Option


def _declare(runtime: str, colour: str, *options: Option, **more: Any) -> Declaration:
    fields: dict[str, Any] = {
        "factory_args": {"name": f"oci:{runtime}"},
        "label": f"{runtime} running an OCI bundle of the same rootfs",
        "doctor": "runtimes.oci.checks:checks",
        **more,
    }
    return Declaration(
        name=f"oci:{runtime}",
        factory="runtimes.oci.backend:OciBackend",
        colour=colour,
        peer_of="container",
        sweep="runtimes.oci.backend:cleanup_leftovers",
        # the bundle carries the built-in container's profile, resolved (runtimes.container.security.seccomp)
        options=(Option("seccomp", str, "default",
                        help="seccomp profile in the bundle: default (Docker's), unconfined, or a JSON file",
                        verify="runtimes.container.security.seccomp:check"),
                 *options),
        **fields,
    )


RUNC = _declare("runc", "#009E73")
CRUN = _declare("crun", "#CC79A7")

#: gVisor: the host cgroup around the sandbox (the Gofer, the Sentry and its ptrace stubs) holds
#: the limits; the workload's processes live in the Sentry, not on the host
_AROUND = "host cgroup around the gVisor sandbox (Sentry, Gofer, stubs)"
RUNSC = _declare(
    "runsc", "#661100",
    Option("platform", str, "auto", help="gVisor platform: auto (KVM where a probe sandbox starts on it, else "
                                         "ptrace), ptrace or kvm"),
    label="gVisor's runsc (an application kernel) running an OCI bundle of the same rootfs",
    factory_args={"name": "oci:runsc", "platform": "auto"},
    doctor="runtimes.oci.checks:runsc",
    optional=True,
    # an app in gVisor listens on the Sentry's own network stack: a probe from the host's side of
    # its namespace cannot reach it (and redis's threads fail there): no image workloads yet
    images=False,
    enforcement={"cpu": f"{_AROUND}: cpu quota", "memory": f"{_AROUND}: memory limit, Sentry included",
                 "pids": f"{_AROUND}: pids limit, counting the Sentry's and Gofer's threads"},
    accel_labels={"ptrace": "gVisor ptrace platform", "kvm": "gVisor KVM platform",
                  "systrap": "gVisor systrap platform"},
    tools={"runsc": ("runsc", "--version")},
)

_LAZY = ("RUNTIMES", "OciBackend", "OciInstance", "cleanup_leftovers", "find_runtime")


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from runtimes.oci import backend

        return getattr(backend, name)
    raise AttributeError(f"module 'runtimes.oci' has no attribute {name!r}")


__all__ = ["CRUN", "RUNC", "RUNSC", *_LAZY]
