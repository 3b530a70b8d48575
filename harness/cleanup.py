"""``isobench cleanup``: remove what crashed runs left behind, and say what it removed.

Everything isobench creates carries ``isobench`` in its name (and the run id),
so leftovers are found by name: cgroups below our own, container processes
and mounts (the container backend), libvirt domains (the VM backend), OCI
containers (the oci backend).  A backend that is not installed is skipped.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable

from runtimes import cgroups

#: modules providing ``cleanup_leftovers(run_id) -> list[str]``; order matters:
#: domains and containers first (they own processes), cgroups last
BACKEND_SWEEPERS = ("runtimes.vm", "runtimes.oci", "runtimes.vm.qemu", "runtimes.container")


def _sweepers() -> list[Callable[[str | None], list[str]]]:
    found = []
    for name in BACKEND_SWEEPERS:
        with contextlib.suppress(ImportError, AttributeError):
            found.append(importlib.import_module(name).cleanup_leftovers)
    return found


def cleanup(run_id: str | None = None) -> list[str]:
    removed: list[str] = []
    for sweep in _sweepers():
        try:
            removed += sweep(run_id)
        except ImportError:  # that backend's library is not installed: it made nothing here
            continue
    for d in cgroups.find_leftovers():
        if run_id and run_id not in d.name:
            continue
        cgroups.remove_dir(d)
        removed.append(f"cgroup {d}")
    return removed
