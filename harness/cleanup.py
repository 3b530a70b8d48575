"""``isobench cleanup``: remove what crashed runs left behind, and say what it removed.

Everything isobench creates carries ``isobench`` in its name (and the run id),
so leftovers are found by name: each registered backend's declared sweep
removes its own kind (processes and mounts, libvirt domains, OCI containers),
then the cgroups below our own go.  A backend whose library is not installed
made nothing here and is skipped.

Only what a dead harness left is touched: every harness records itself as the
owner of the runs it launches for (``runtimes.owners``: pid and start time), and
each sweep, like the cgroup sweep here, leaves alone whatever belongs to a run
whose owner is alive, or is named after a live process.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import runtimes
from runtimes import cgroups, owners
from runtimes.declaration import resolve
from runtimes.naming import check_run_id, of_run

#: sweeps of what is not one backend's: ``isobench matrix`` guests (their QEMU and temporary
#: directories), the image store (what a killed ``isobench image import`` left), image instances'
#: layers and trees, which several backends share (after the backends' own sweeps, which end the
#: processes that use them), the throughput benchmarks' network namespaces and taps, and their
#: scratch directories, ``isobench fleet``'s directories and SSH masters on the controller, the git
#: worktrees of a killed ``isobench ab``
HARNESS_SWEEPS = ("harness.matrix.leftovers:cleanup_leftovers", "runtimes.image.store:cleanup_leftovers",
                  "runtimes.image.rundir:cleanup_leftovers", "runtimes.netlab:sweep",
                  "runtimes.throughput.scratch:sweep", "harness.fleet.leftovers:cleanup_leftovers",
                  "harness.ab.leftovers:cleanup_leftovers")


def _sweepers() -> list[Callable[[str | None], list[str]]]:
    """Each backend's sweep, once (several backends may share one), in registry order."""
    found = []
    for ref in dict.fromkeys([*(d.sweep for d in runtimes.declarations() if d.sweep), *HARNESS_SWEEPS]):
        try:
            found.append(resolve(ref))
        except ImportError:  # that backend's library is not installed: it made nothing here
            continue
    return found


def live_run(run_id: str) -> owners.Owner | None:
    """The live owner of ``run_id`` (None: no process that launched for it is alive)."""
    found = owners.live().runs.get(run_id)
    return found[0] if found else None


def cleanup(run_id: str | None = None) -> list[str]:
    if run_id is not None:
        check_run_id(run_id)
    removed: list[str] = []
    # the backends' own kinds first (domains and containers own processes and cgroups), cgroups last
    for sweep in _sweepers():
        try:
            removed += sweep(run_id)
        except ImportError:  # that backend's library is not installed: it made nothing here
            continue
    for d in leftover_cgroups(run_id):
        cgroups.remove_dir(d)
        removed.append(f"cgroup {d}")
    owners.live(prune=True)  # the records of owners that are gone
    return removed


def leftover_cgroups(run_id: str | None = None) -> list[Path]:
    """The isobench cgroups below ours (of ``run_id`` if given, deepest first) that no live run
    owns and that are named after no live process: what ``cleanup`` removes."""
    live = owners.live()
    return [d for d in cgroups.find_leftovers()
            if not (run_id and not any(of_run(p, run_id) for p in d.parts)) and not live.owns_path(d.parts)]
