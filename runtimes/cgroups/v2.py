"""cgroup v2: one directory in the unified hierarchy (``dirs == {"": directory}``)."""

from __future__ import annotations

from pathlib import Path

from runtimes.cgroups.files import CgroupError, read_int, read_kv, write
from runtimes.limits import Limits

VERSION = 2


def apply(dirs: dict[str, Path], limits: Limits) -> None:
    d = dirs[""]
    for needed, file in ((limits.cpu_quota, "cpu.max"), (limits.cpu_weight, "cpu.weight"),
                         (limits.memory_mib, "memory.max"),
                         (limits.pids, "pids.max")):
        if needed is not None and not (d / file).exists():
            ctrl = file.split(".")[0]
            raise CgroupError(f"cgroup v2: the {ctrl} controller is not delegated to {d.parent}, "
                              f"so this {ctrl} limit cannot be applied (run isobench in a delegated "
                              f"scope: systemd-run --scope -p Delegate=yes -- isobench …)")
    if limits.cpu_quota is not None:
        write(d / "cpu.max", f"{limits.cpu_quota_us} {limits.cpu_period_us}")
    if limits.cpu_weight is not None:
        write(d / "cpu.weight", str(limits.cpu_weight))
    if limits.cpu_burst_us is not None:
        if not (d / "cpu.max.burst").exists():
            raise CgroupError("this kernel has no cpu.max.burst (CFS burst arrived in Linux 5.14)")
        write(d / "cpu.max.burst", str(limits.cpu_burst_us))
    if limits.memory_mib is not None:
        apply_memory(d, limits.memory_mib)
    if limits.pids is not None:
        write(d / "pids.max", str(limits.pids))


def apply_memory(d: Path, mib: int) -> None:
    """memory.max (and no swap) of directory ``d`` (a v2 cgroup, or a v1 cgroup's unified part)."""
    if not (d / "memory.max").exists():
        raise CgroupError(f"cgroup v2: the memory controller is not delegated to {d.parent}")
    write(d / "memory.max", str(mib << 20))
    if (d / "memory.swap.max").exists():
        write(d / "memory.swap.max", "0")


def _ints(d: Path, files: tuple[tuple[str, str], ...]) -> dict[str, float]:
    """key -> the integer in ``d / file``, for the files that exist."""
    return {key: val for key, fname in files if (val := read_int(d / fname)) is not None}


def memory_usage(d: Path) -> dict[str, float]:
    """The memory counters of directory ``d`` under the names v1's have."""
    u = _ints(d, (("mem_current_bytes", "memory.current"), ("mem_peak_bytes", "memory.peak")))
    ev = read_kv(d / "memory.events")
    if ev:
        u["mem_failcnt"] = ev.get("max", 0)
        u["oom_events"] = ev.get("oom", 0)
        u["oom_kill"] = ev.get("oom_kill", 0)
    return u


def cpu_counters(dirs: dict[str, Path]) -> dict[str, float]:
    """CPU time and the CFS bandwidth counters only (what is read once per period)."""
    u: dict[str, float] = {}
    st = read_kv(dirs[""] / "cpu.stat")
    if "usage_usec" in st:
        u["cpu_usage_ns"] = st["usage_usec"] * 1000
    if "nr_periods" in st:
        u["cpu_nr_periods"] = st["nr_periods"]
        u["cpu_nr_throttled"] = st["nr_throttled"]
        u["cpu_throttled_ns"] = st["throttled_usec"] * 1000
    return u


def cpu_bandwidth(dirs: dict[str, Path]) -> dict[str, float]:
    """The CFS bandwidth the kernel applied (cpu.max "QUOTA PERIOD", "max" = none), in µs."""
    try:
        quota, period = (dirs[""] / "cpu.max").read_text().split()
        out: dict[str, float] = {"cpu_quota_us": -1 if quota == "max" else int(quota), "cpu_period_us": int(period)}
    except (OSError, ValueError):
        return {}
    burst = read_int(dirs[""] / "cpu.max.burst")
    if burst is not None:
        out["cpu_burst_us"] = burst
    return out


def usage(dirs: dict[str, Path]) -> dict[str, float]:
    d = dirs[""]
    u = {**cpu_counters(dirs), **cpu_bandwidth(dirs), **memory_usage(d),
         **_ints(d, (("pids_current", "pids.current"), ("pids_peak", "pids.peak")))}
    pe = read_kv(d / "pids.events")
    if pe:
        u["pids_refused"] = pe.get("max", 0)
    return u
