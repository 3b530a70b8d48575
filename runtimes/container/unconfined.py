"""``container:unconfined``: the built-in container without its seccomp filter.

The same runtime as ``container`` with ``seccomp="unconfined"`` (what
``isobench exec --seccomp unconfined`` runs), registered as a backend of its own
so that one interleaved run measures what the filter costs
(``scenarios/hardening.toml``).  Everything else (devices, masks, keyring,
rlimits, capabilities) stays on.
"""

from __future__ import annotations

from typing import Any

from runtimes.container import seccomp
from runtimes.container.backend import ContainerBackend


class UnconfinedContainerBackend(ContainerBackend):
    name = "container:unconfined"

    def __init__(self, **options: Any):
        options.setdefault("seccomp", seccomp.UNCONFINED)
        super().__init__(**options)
