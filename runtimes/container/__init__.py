"""isobench's own container runtime (the ``container`` backend).

Modules: ``backend`` (ContainerBackend, ContainerInstance, the variants),
``mounts`` (the mount plan as data) and ``prims`` (the mount primitives it
lowers to), ``namespaces`` (flags, the loopback request), ``checks`` (its
``isobench doctor`` lines), ``leftovers`` (the sweep after a killed harness).
Sub-packages: ``launcher`` (how PID 1 is made: the zygotes, Python and C, their
wire format and build, the prepared root, the child's setup), ``devices`` (the
device rules and what enforces them), ``security`` (capabilities, seccomp,
rlimits and the other process attributes).  Low-level syscalls live in
``runtimes.syscalls``; a launch-latency comparison helper in
``benchmarks/launch_compare.py``.

``python -m runtimes.container plan`` prints the mount plan;
``python -m runtimes.container run -- CMD...`` runs a command in a container.

Importing this package imports only its declaration (standard library).
"""

from __future__ import annotations

from runtimes.declaration import Declaration, Option

#: a profile named in a scenario is read and checked when the scenario is (``Option.verify``)
SECCOMP_CHECK = "runtimes.container.security.seccomp:check"


def _seccomp(default: str = "default") -> Option:
    return Option("seccomp", str, default, help="seccomp profile: default (Docker's), unconfined, or a JSON file",
                  verify=SECCOMP_CHECK)


#: how PID 1 is made: by the zygote (a small helper started once), or by forking the harness
LAUNCHER = Option("launcher", str, "zygote", help="zygote (default) or fork (fork the harness, the old way)",
                  choices=("zygote", "fork"))
#: which zygote: the C one (built on first use; the Python one where it cannot be), or the Python one
ZYGOTE = Option("zygote", str, "native", help="native (default: a small C program) or python (the A/B)",
                choices=("native", "python"))


DECLARATION = Declaration(
    name="container",
    factory="runtimes.container.backend:ContainerBackend",
    label="isobench's own runtime (namespaces, pivot_root, a cgroup)",
    colour="#0072B2",
    floor_target=True,
    floor_compared=True,
    sweep="runtimes.container.leftovers:cleanup_leftovers",
    doctor="runtimes.container.checks:checks",
    options=(_seccomp(), LAUNCHER, ZYGOTE),
)
#: the same runtime with its launch helper (the zygote) started anew in every launch: the cold figure
COLD = Declaration(
    name="container:cold",
    factory="runtimes.container.cold:ColdContainerBackend",
    label="isobench's own runtime, launch helper started in every launch (cold)",
    colour="#332288",
    sweep="runtimes.container.leftovers:cleanup_leftovers",
    options=(_seccomp(), ZYGOTE),
)
#: the same runtime with PID 1 forked from the harness (no zygote): the launcher's A/B
FORK = Declaration(
    name="container:fork",
    factory="runtimes.container.backend:ContainerBackend",
    factory_args={"launcher": "fork"},
    label="isobench's own runtime, PID 1 forked from the harness (no zygote)",
    colour="#88CCEE",
    sweep="runtimes.container.leftovers:cleanup_leftovers",
    options=(_seccomp(),),
)
#: the same runtime with the Python zygote, whose child sets the container up in Python: the A/B
#: of the native zygote (scenarios/startup.toml), in one interleaved run
PYTHON = Declaration(
    name="container:python",
    factory="runtimes.container.backend:ContainerBackend",
    factory_args={"zygote": "python", "name": "container:python"},
    label="isobench's own runtime, Python zygote (the native one's A/B)",
    colour="#44AA99",
    sweep="runtimes.container.leftovers:cleanup_leftovers",
    options=(_seccomp(),),
)
#: the same runtime without its seccomp filter: what the filter costs (scenarios/hardening.toml)
UNCONFINED = Declaration(
    name="container:unconfined",
    factory="runtimes.container.backend:ContainerBackend",
    factory_args={"seccomp": "unconfined", "name": "container:unconfined"},
    label="isobench's own runtime without its seccomp filter",
    colour="#999933",
    sweep="runtimes.container.leftovers:cleanup_leftovers",
    options=(_seccomp("unconfined"), ZYGOTE),
)


def cleanup_leftovers(run_id: str | None = None) -> list[str]:
    """Kill leftover container processes and unmount their mounts (of ``run_id`` if given)."""
    from runtimes.container.leftovers import cleanup_leftovers as impl

    return impl(run_id)


__all__ = ["COLD", "DECLARATION", "FORK", "PYTHON", "UNCONFINED", "cleanup_leftovers"]
