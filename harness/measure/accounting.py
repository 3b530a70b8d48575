"""What an instance's own accounting says it costs: its processes' pages and its cgroup's kernel memory.

Beside a host-wide difference (density's MemAvailable slope) the same cost is
read from the instance itself, so the two methods can be compared:

- from ``/proc/PID/smaps_rollup`` of every process of the instance: PSS, the
  anonymous memory and the private dirty pages (what the instance wrote: its
  heap, stacks, relocated data; the part a copy of the same binary cannot share);
- from the instance's cgroup: the kernel memory charged to it (v1
  ``memory.kmem.usage_in_bytes``; v2 ``memory.stat``'s ``kernel``, or the sum of
  its parts on kernels before 5.18): page tables, slab (namespaces, mounts,
  task structs), kernel stacks.  A backend without a cgroup reports none.

Reading the host's available memory: ``/proc/sys/vm/stat_refresh`` is written
first, which folds the per-CPU vmstat deltas into the global counters (they are
otherwise refreshed about once a second, so two reads 0.25 s apart could agree
on a stale value).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Iterable

    from runtimes.base import Instance

KIB = 1024
#: memory.stat (v2) fields that make up kernel memory where there is no ``kernel`` total (< 5.18)
V2_KERNEL_PARTS = ("kernel_stack", "pagetables", "sec_pagetables", "percpu", "sock", "vmalloc", "slab")


@dataclass(frozen=True)
class Pages:
    """Bytes summed over a set of processes (smaps_rollup)."""

    pss: int = 0
    rss: int = 0
    anon: int = 0
    private_dirty: int = 0
    private: int = 0  # Private_Clean + Private_Dirty: USS
    processes: int = 0

    @property
    def uss(self) -> int:
        return self.private


def rollup(pid: int) -> dict[str, int] | None:
    """``/proc/PID/smaps_rollup`` as bytes per field; None when the process is gone."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    out: dict[str, int] = {}
    for line in text.splitlines()[1:]:
        name, _, rest = line.partition(":")
        with contextlib.suppress(ValueError, IndexError):
            out[name.strip()] = int(rest.split()[0]) * KIB
    return out


def pages(pids: Iterable[int]) -> Pages:
    pss = rss = anon = dirty = private = n = 0
    for pid in pids:
        r = rollup(pid)
        if r is None:
            continue  # exited between listing and reading: it no longer uses memory
        pss += r.get("Pss", 0)
        rss += r.get("Rss", 0)
        anon += r.get("Anonymous", 0)
        dirty += r.get("Private_Dirty", 0)
        private += r.get("Private_Clean", 0) + r.get("Private_Dirty", 0)
        n += 1
    return Pages(pss, rss, anon, dirty, private, n)


def kernel_memory(inst: Instance) -> int | None:
    """Kernel memory charged to the instance's cgroup, bytes; None without a cgroup or a counter."""
    cg = inst.cgroup
    if cg is None:
        return None
    dirs = getattr(cg, "dirs", {})
    if "memory" in dirs:  # v1
        with contextlib.suppress(OSError, ValueError):
            return int((Path(dirs["memory"]) / "memory.kmem.usage_in_bytes").read_text())
        return None
    if "" in dirs:  # v2
        stat = _kv(Path(dirs[""]) / "memory.stat")
        if "kernel" in stat:
            return stat["kernel"]
        parts = [stat[k] for k in V2_KERNEL_PARTS if k in stat]
        return sum(parts) if parts else None
    return None


def _kv(path: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            k, _, v = line.partition(" ")
            with contextlib.suppress(ValueError):
                out[k] = int(v)
    return out


def refresh_vmstat() -> None:
    """Fold per-CPU vmstat deltas into the global counters now (root; harmless if refused)."""
    with contextlib.suppress(OSError):
        Path("/proc/sys/vm/stat_refresh").write_text("1")


def charged() -> int | None:
    """Memory charged to the cgroup the harness makes its instances under (its own memory cgroup
    here): user pages + kernel memory of the harness and every instance below it, bytes.

    Unlike MemAvailable it does not move when other tenants of the host allocate; it misses what
    the kernel charges to no cgroup.  None where no memory controller is available."""
    from runtimes.cgroups import host

    with contextlib.suppress(Exception):  # a host without a memory hierarchy: no second method
        dirs = host.parent_dirs()
        if "memory" in dirs:
            return int((Path(dirs["memory"]) / "memory.usage_in_bytes").read_text())
        if "" in dirs:
            return int((Path(dirs[""]) / "memory.current").read_text())
    return None


def mem_available() -> int:
    """MemAvailable in bytes, read right after a vmstat refresh."""
    refresh_vmstat()
    return meminfo("MemAvailable")


def meminfo(name: str) -> int:
    """One field of /proc/meminfo, bytes (as it stands: ``mem_available`` refreshes first)."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return int(line.split()[1]) * KIB
    raise OSError(f"/proc/meminfo has no {name}")


def file_charge(inst: Instance) -> int | None:
    """Page cache charged to the instance's own cgroup (v1 ``memory.stat`` cache, v2 file), bytes;
    None without a cgroup or a memory controller."""
    dirs = getattr(inst.cgroup, "dirs", {}) if inst.cgroup is not None else {}
    for key, field in (("memory", "cache"), ("", "file")):
        if key in dirs:
            return _kv(Path(dirs[key]) / "memory.stat").get(field)
    return None
