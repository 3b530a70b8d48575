"""This host's cgroups: where the hierarchies are, where we sit in them, the v2 delegation.

Host-wide facts, separate from the per-instance ``Cgroup``: the mount table and
our own cgroup (read once per process: parsing them cost ~2 ms per instance,
most of the create time; the v2 delegation, which moves us into a leaf, clears
the cache), the version in use, where our cgroups go, and the sweep for
leftovers.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from runtimes.cgroups import tree
from runtimes.cgroups.files import CgroupError, read_pids, write
from runtimes.cgroups.parse import (
    Mount,
    favordynmods,
    parse_mountinfo,
    parse_proc_cgroup,
    paths_by_controller,
)
from runtimes.cgroups.v1 import UNIFIED
from runtimes.naming import PREFIX

CGROUP_ROOT = Path("/sys/fs/cgroup")
#: what an instance's cgroup needs, per version
V1_CONTROLLERS = ("cpu", "cpuacct", "memory", "pids")
V2_CONTROLLERS = ("cpu", "memory", "pids")
#: the v1 controllers we report and sweep (named hierarchies and the rest are left alone)
V1_MANAGED = frozenset(V1_CONTROLLERS + ("cpuset", "freezer", "blkio", "devices"))

#: on v2 the harness moves itself into this leaf of its own cgroup, so that the own
#: cgroup holds no process and may hand cpu/memory/pids to the instances' cgroups
HARNESS_LEAF = f"{PREFIX}-harness"


@functools.lru_cache(maxsize=1)
def mounts() -> tuple[Mount, ...]:
    """Every cgroup hierarchy mounted in our mount namespace."""
    return tuple(parse_mountinfo(Path("/proc/self/mountinfo").read_text()))


def own_paths() -> dict[str, str]:
    """Controller (or "" for the unified hierarchy) -> this process's cgroup path."""
    return dict(_own_paths())


@functools.lru_cache(maxsize=1)
def _own_paths() -> dict[str, str]:
    return paths_by_controller(parse_proc_cgroup(Path("/proc/self/cgroup").read_text()))


def process_paths(pid: int) -> dict[str, str]:
    """Controller (or "") -> cgroup path of another process (e.g. a QEMU libvirt started)."""
    return paths_by_controller(parse_proc_cgroup(Path(f"/proc/{pid}/cgroup").read_text()))


def v1_mounts() -> dict[str, Path]:
    """v1 controller -> its hierarchy's mountpoint (the first mount, as the kernel lists them)."""
    found: dict[str, Path] = {}
    for m in mounts():
        if m.version == 1:
            for c in m.controllers:
                found.setdefault(c, m.path)
    return found


def v2_mount() -> Mount | None:
    return next((m for m in mounts() if m.version == 2), None)


def host_dir(controller: str, cgroup_path: str) -> Path | None:
    """The directory of ``cgroup_path`` in ``controller``'s hierarchy ("" = unified)."""
    for m in mounts():
        if (controller == "" and m.version == 2) or (controller and controller in m.controllers):
            return m.host_path(cgroup_path)
    return None


def v2_base() -> str:
    """Our own v2 cgroup path, seen from above the harness leaf we may have moved into."""
    own = own_paths().get("", "/")
    return own.rsplit("/", 1)[0] or "/" if own.rsplit("/", 1)[-1] == HARNESS_LEAF else own


def _v2_available(mount: Mount) -> set[str]:
    d = mount.host_path(v2_base())
    try:
        return set((d / "cgroup.controllers").read_text().split()) if d is not None else set()
    except OSError:
        return set()


@functools.lru_cache(maxsize=1)
def version() -> int:
    """2 when the unified hierarchy carries cpu, memory and pids (at our level, or on a
    pure v2 host where no v1 hierarchy has them); 1 otherwise (v1 or hybrid)."""
    v2 = v2_mount()
    if v2 is None:
        return 1
    if set(V2_CONTROLLERS) <= _v2_available(v2) or not set(V2_CONTROLLERS) & set(v1_mounts()):
        return 2
    return 1


def describe() -> dict[str, object]:
    """For the manifest and the doctor: version, usable controllers, favordynmods."""
    v2 = v2_mount()
    if version() == 2:
        assert v2 is not None
        out: dict[str, object] = {"version": 2, "mount": str(v2.path), "controllers": sorted(_v2_available(v2))}
    else:
        out = {"version": 1, "controllers": sorted(set(v1_mounts()) & V1_MANAGED),
               "unified": str(v2.path) if v2 else None, "hybrid": v2 is not None}
        if memory_on_unified():
            out["memory"] = "on the unified hierarchy (cgroup2 memory.max): no v1 memory hierarchy here"
    out["favordynmods"] = migration_cost()
    return out


def migration_cost() -> dict[str, object]:
    """favordynmods state (see ``parse.favordynmods``): whether a cgroup.procs write waits."""
    try:
        cmdline = Path("/proc/cmdline").read_text()
    except OSError:
        cmdline = ""
    return favordynmods(Path("/proc/self/mountinfo").read_text(), cmdline)


# -- where our cgroups go ---------------------------------------------------------------


def parent_dirs(v: int | None = None) -> dict[str, Path]:
    """Where an instance's cgroups go: below our own cgroup in each hierarchy it needs.

    v1: controller -> our own directory there (a ``CgroupError`` names any of
    ``V1_CONTROLLERS`` not mounted); v2: ``{"": our own directory}``, with
    cpu/memory/pids delegated below it when v2 is the version in use."""
    return dict(_parent_dirs(v or version()))


# On the timed launch path (Cgroup.create): computed once per version, like the mount
# table; a failure is not cached (lru_cache keeps results only).
@functools.lru_cache(maxsize=2)
def _parent_dirs(v: int) -> tuple[tuple[str, Path], ...]:
    if v == 2:
        m = v2_mount()
        parent = m.host_path(v2_base()) if m is not None else None
        if parent is None:
            raise CgroupError("no cgroup2 mount found" if m is None else
                              f"our cgroup {v2_base()} is not below the cgroup2 mount {m.path}")
        if version() == 2:
            _delegate_controllers(parent)
        return (("", parent),)
    own = own_paths()
    dirs: dict[str, Path] = {}
    for c in V1_CONTROLLERS:
        d = host_dir(c, own.get(c, "/"))
        if d is not None:
            dirs[c] = d
    missing = set(V1_CONTROLLERS) - set(dirs)
    if "memory" in missing:
        unified = _unified_memory()
        if unified is not None:  # hybrid: memory lives on cgroup2, the rest on v1
            dirs[UNIFIED] = unified
            missing.discard("memory")
    if missing:
        raise CgroupError(f"cgroup v1 controllers not mounted: {', '.join(sorted(missing))}"
                          + (" (nor is memory available on the unified hierarchy)" if "memory" in missing else ""))
    return tuple(dirs.items())


def _unified_memory() -> Path | None:
    """Hybrid mode without a v1 memory hierarchy (a kernel built without CONFIG_MEMCG_V1): our
    own directory on the unified hierarchy, with its memory controller handed down below it;
    None when the unified hierarchy has no memory controller for us either."""
    m = v2_mount()
    if m is None or "memory" not in _v2_available(m):
        return None
    parent = m.host_path(v2_base())
    if parent is None:
        return None
    _delegate_controllers(parent, ("memory",))
    return parent


def memory_on_unified() -> bool:
    """Whether memory limits go to the unified hierarchy on this v1 host (``UNIFIED``)."""
    try:
        return version() == 1 and UNIFIED in parent_dirs(1)
    except (CgroupError, OSError):
        return False


def dirs_for(name: str, v: int | None = None) -> dict[str, Path]:
    """The directories a cgroup called ``name`` would have (nothing is created)."""
    return {k: p / name for k, p in parent_dirs(v).items()}


# -- v2 delegation ----------------------------------------------------------------------


def prepare() -> None:
    """v2: hand cpu/memory/pids down below our own cgroup now, while this process may
    still be alone in it (before it starts helpers, a test suite its subprocesses)."""
    if v2_mount() is not None and version() == 2:
        parent_dirs(2)


#: v2 parents whose delegation is done: Cgroup.create is on the timed launch path
_delegated: set[Path] = set()


def _delegate_controllers(parent: Path, controllers: tuple[str, ...] = V2_CONTROLLERS) -> None:
    """v2: make ``controllers`` (cpu, memory and pids) available to children of ``parent``.

    The "no internal processes" rule forbids enabling controllers in a cgroup
    that holds processes.  If our own process is the only one there (a
    ``systemd-run --scope -p Delegate=yes`` or a CI job), it moves itself *down*
    into a leaf; otherwise it says how to get a delegated scope.
    """
    if parent in _delegated:
        return
    enabled = set((parent / "cgroup.subtree_control").read_text().split())
    # Only what our parent delegated to us can be handed on; a limit that needs a
    # controller missing here fails when it is applied, with its own message.
    want = set(controllers) & set((parent / "cgroup.controllers").read_text().split())
    if want <= enabled:
        _delegated.add(parent)
        return
    hint = "run isobench in a delegated scope: systemd-run --scope -p Delegate=yes -- isobench …"
    # the root cgroup may hold processes and hand controllers down all the same
    root = not (parent / "cgroup.type").exists()
    procs = set() if root else set(read_pids(parent / "cgroup.procs"))
    if procs and procs != {os.getpid()}:
        raise CgroupError(f"cgroup v2: {parent} holds other processes, so cpu/memory/pids cannot be "
                          f"handed below it; {hint}")
    if procs:  # only us: move down into the leaf (never up), which empties our own cgroup
        leaf = parent / HARNESS_LEAF
        leaf.mkdir(exist_ok=True)
        write(leaf / "cgroup.procs", str(os.getpid()))
        _own_paths.cache_clear()
    write(parent / "cgroup.subtree_control", " ".join(f"+{c}" for c in sorted(want - enabled)))
    _delegated.add(parent)


# -- leftovers --------------------------------------------------------------------------


def find_leftovers() -> Iterator[Path]:
    """Every isobench cgroup directory below our own cgroups, deepest first."""
    own = own_paths()
    seen: set[Path] = set()
    for m in mounts():
        keys = [""] if m.version == 2 else sorted(m.controllers & V1_MANAGED)
        for k in keys:
            base = m.host_path(v2_base() if k == "" else own.get(k, "/"))
            if base is None or base in seen or not base.is_dir():
                continue
            seen.add(base)
            for d in sorted(_named_dirs(base), key=lambda p: -len(p.parts)):
                if d.is_dir() and not _live_harness_leaf(d):
                    yield d


def _named_dirs(base: Path) -> list[Path]:
    """isobench directories below ``base``.  os.walk, unlike Path.rglob, shrugs off a
    directory that another run removes while the walk is under way."""
    return [Path(top) / d for top, dirs, _ in os.walk(base) for d in dirs if d.startswith(PREFIX)]


def _live_harness_leaf(d: Path) -> bool:
    """The v2 leaf running harnesses moved into: a leftover only once it is empty."""
    return d.name == HARNESS_LEAF and bool(read_pids(d / "cgroup.procs"))


def remove_dir(d: Path) -> None:
    """Kill everything in one leftover cgroup directory (and below it) and remove it."""
    tree.remove([d], str(d))


@dataclass(frozen=True)
class Hierarchy:
    """A mounted hierarchy we are in, with our own cgroup's host path in it."""

    mountpoint: Path
    version: int
    #: v1 controllers (and ``name=...``) of the hierarchy; empty for cgroup2
    controllers: frozenset[str]
    #: host path of our own cgroup in it
    own: Path


def hierarchies(mountinfo: str | None = None, proc_cgroup: str | None = None) -> list[Hierarchy]:
    """Every mounted cgroup hierarchy (named ones included) with our own cgroup's host path
    in it; each hierarchy once; those that do not show our cgroup are left out."""
    found_mounts = parse_mountinfo(mountinfo) if mountinfo is not None else list(mounts())
    text = proc_cgroup if proc_cgroup is not None else Path("/proc/self/cgroup").read_text()
    own = {frozenset() if m.unified else m.controllers: m.path for m in parse_proc_cgroup(text)}
    found: list[Hierarchy] = []
    seen: set[frozenset[str]] = set()
    for m in found_mounts:
        if m.controllers in seen or m.controllers not in own:
            continue  # the same hierarchy mounted twice, or one we are not in
        where = m.host_path(own[m.controllers])
        if where is None:
            continue  # our cgroup is outside what this mount shows
        seen.add(m.controllers)
        found.append(Hierarchy(m.path, m.version, m.controllers, where))
    return found
