"""``isobench cleanup``: remove what crashed runs left behind, and say what it removed.

Everything isobench creates carries ``isobench`` in its name (and the run id),
so leftovers are found by name: each registered backend's declared sweep
removes its own kind (processes and mounts, libvirt domains, OCI containers),
then the cgroups below our own go.  A backend whose library is not installed
made nothing here and is skipped.
"""

from __future__ import annotations

from collections.abc import Callable

import runtimes
from runtimes import cgroups
from runtimes.declaration import resolve

#: sweeps of what is not a backend: ``isobench matrix`` guests (their QEMU and temporary directories),
#: ``isobench fleet``'s directories and SSH masters on the controller
HARNESS_SWEEPS = ("harness.matrix.leftovers:cleanup_leftovers", "harness.fleet.leftovers:cleanup_leftovers")


def _sweepers() -> list[Callable[[str | None], list[str]]]:
    """Each backend's sweep, once (several backends may share one), in registry order."""
    found = []
    for ref in dict.fromkeys([*(d.sweep for d in runtimes.declarations() if d.sweep), *HARNESS_SWEEPS]):
        try:
            found.append(resolve(ref))
        except ImportError:  # that backend's library is not installed: it made nothing here
            continue
    return found


def cleanup(run_id: str | None = None) -> list[str]:
    removed: list[str] = []
    # the backends' own kinds first (domains and containers own processes and cgroups), cgroups last
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
