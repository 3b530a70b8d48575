"""cgroup v1: one directory per controller (cpu, cpuacct, memory, pids), each in its own
hierarchy.  Every function takes the cgroup's ``controller -> directory`` map and reads
or writes only the controllers it finds there (a wrapped foreign cgroup may have fewer)."""

from __future__ import annotations

import contextlib
from pathlib import Path

from runtimes.cgroups import v2
from runtimes.cgroups.files import CgroupError, read_int, read_kv, write
from runtimes.limits import Limits

VERSION = 1
#: v1 with no v1 memory hierarchy (Linux 6.12+ built without CONFIG_MEMCG_V1): the key of a cgroup's
#: directory on the unified hierarchy, where its memory controller is (``host._unified_memory``)
UNIFIED = "unified"


def apply(dirs: dict[str, Path], limits: Limits) -> None:
    if limits.cpu_quota is not None:
        write(dirs["cpu"] / "cpu.cfs_period_us", str(limits.cpu_period_us))
        write(dirs["cpu"] / "cpu.cfs_quota_us", str(limits.cpu_quota_us))
    if limits.cpu_burst_us is not None:
        if not (dirs["cpu"] / "cpu.cfs_burst_us").exists():
            raise CgroupError("this kernel has no cpu.cfs_burst_us (CFS burst arrived in Linux 5.14)")
        write(dirs["cpu"] / "cpu.cfs_burst_us", str(limits.cpu_burst_us))
    if limits.cpu_shares is not None:
        write(dirs["cpu"] / "cpu.shares", str(limits.cpu_shares))
    if limits.memory_mib is not None and "memory" not in dirs and UNIFIED in dirs:
        v2.apply_memory(dirs[UNIFIED], limits.memory_mib)  # hybrid, no v1 memory hierarchy
    elif limits.memory_mib is not None:
        mem = dirs["memory"]
        write(mem / "memory.limit_in_bytes", str(limits.memory_mib << 20))
        if (mem / "memory.memsw.limit_in_bytes").exists():  # swap accounting on
            write(mem / "memory.memsw.limit_in_bytes", str(limits.memory_mib << 20))
        with contextlib.suppress(CgroupError):
            write(mem / "memory.swappiness", "0")
    if limits.pids is not None:
        write(dirs["pids"] / "pids.max", str(limits.pids))


def cpu_counters(dirs: dict[str, Path]) -> dict[str, float]:
    """CPU time and the CFS bandwidth counters only (what is read once per period)."""
    u: dict[str, float] = {}
    if "cpuacct" in dirs:
        val = read_int(dirs["cpuacct"] / "cpuacct.usage")
        if val is not None:
            u["cpu_usage_ns"] = val
    if "cpu" in dirs:
        st = read_kv(dirs["cpu"] / "cpu.stat")
        if "nr_periods" in st:
            u["cpu_nr_periods"] = st["nr_periods"]
            u["cpu_nr_throttled"] = st["nr_throttled"]
            u["cpu_throttled_ns"] = st["throttled_time"]
    return u


def cpu_bandwidth(dirs: dict[str, Path]) -> dict[str, float]:
    """The CFS bandwidth the kernel applied, in µs: quota (-1 = none) and period."""
    if "cpu" not in dirs:
        return {}
    q, p = read_int(dirs["cpu"] / "cpu.cfs_quota_us"), read_int(dirs["cpu"] / "cpu.cfs_period_us")
    out: dict[str, float] = {"cpu_quota_us": q, "cpu_period_us": p} if q is not None and p is not None else {}
    burst = read_int(dirs["cpu"] / "cpu.cfs_burst_us")
    if burst is not None:
        out["cpu_burst_us"] = burst
    return out


def usage(dirs: dict[str, Path]) -> dict[str, float]:
    u = {**cpu_counters(dirs), **cpu_bandwidth(dirs)}
    if "memory" in dirs:
        u.update(_memory(dirs["memory"]))
    elif UNIFIED in dirs:
        u.update(v2.memory_usage(dirs[UNIFIED]))
    if "pids" in dirs:
        val = read_int(dirs["pids"] / "pids.current")
        if val is not None:
            u["pids_current"] = val
        pe = read_kv(dirs["pids"] / "pids.events")
        if pe:
            u["pids_refused"] = pe.get("max", 0)
    return u


def _memory(mem: Path) -> dict[str, float]:
    u: dict[str, float] = {}
    for key, fname in (("mem_current_bytes", "memory.usage_in_bytes"),
                       ("mem_peak_bytes", "memory.max_usage_in_bytes"),
                       ("mem_failcnt", "memory.failcnt")):
        val = read_int(mem / fname)
        if val is not None:
            u[key] = val
    # With swap accounting the memsw counter is charged first; when its limit (set
    # equal to the memory limit) is hit, memory.failcnt never moves: count both.
    memsw_failcnt = read_int(mem / "memory.memsw.failcnt")
    if memsw_failcnt is not None and "mem_failcnt" in u:
        u["mem_failcnt"] += memsw_failcnt
    oom = read_kv(mem / "memory.oom_control")
    if "oom_kill" in oom:
        u["oom_kill"] = oom["oom_kill"]
    return u
