"""isobench's own container runtime (the ``container`` backend).

Modules: ``backend`` (ContainerBackend, ContainerInstance), ``init`` (the fork
into a new PID namespace and the child's setup), ``mounts`` (the mount plan as
data), ``namespaces``, ``caps``, ``leftovers`` (cleanup after a killed
harness), ``compare`` (a launch-latency comparison helper, not a test).
Low-level syscalls live in ``runtimes.syscalls``.

``python -m runtimes.container plan`` prints the mount plan;
``python -m runtimes.container run -- CMD...`` runs a command in a container.
"""

from runtimes.container.leftovers import cleanup_leftovers

__all__ = ["cleanup_leftovers"]
