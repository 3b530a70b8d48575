"""The cgroup libvirt made for a domain (its "machine" cgroup), read through ``runtimes.cgroups``,
and the domain's QEMU process.

libvirt puts each guest's QEMU threads into sub-cgroups of the domain's cgroup
(``.../emulator``, ``.../vcpuN``, ``.../iothreadN``); the domain's ``<cputune>``
quota sits on the domain-level one, so that is the one read.  Only CPU counters
come from it: memory is measured from the QEMU process (on a v1 host libvirt is
kept away from the memory controller, see ``runtimes.vm.host``).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import psutil

from runtimes import cgroups
from runtimes.cgroups import Cgroup

#: the leaves libvirt makes for QEMU's threads below the domain's cgroup
_THREAD_LEAVES = ("emulator", "vcpu", "iothread")


def _domain_cgroup(proc_cgroup: str, controller: str) -> str | None:
    """The domain-level cgroup path of a QEMU thread group (``.../emulator`` -> ``...``)."""
    path = cgroups.paths_by_controller(cgroups.parse_proc_cgroup(proc_cgroup)).get(controller)
    return None if path is None else _domain_path(path)


def _domain_path(path: str) -> str:
    head, _, leaf = path.rpartition("/")
    return (head or "/") if leaf.startswith(_THREAD_LEAVES) else path


def domain_cgroup(pid: int) -> Cgroup | None:
    """The domain's cgroup around QEMU ``pid``, wrapped: in v1 its ``cpu`` hierarchy (and
    ``cpuacct`` when libvirt placed it there too), in v2 the unified one (None if unseen)."""
    paths = {c: _domain_path(p) for c, p in cgroups.process_paths(pid).items()}
    name = f"domain of QEMU {pid}"
    v1 = cgroups.v1_mounts()
    if "cpu" in v1:
        dirs: dict[str, Path | None] = {}
        if "cpu" in paths:
            dirs["cpu"] = cgroups.host_dir("cpu", paths["cpu"])
            # libvirt may leave cpuacct alone when it is not co-mounted with cpu (as on our
            # CI host, where QEMU sits at its root): it then counts far more than the domain
            if paths.get("cpuacct") == paths["cpu"] and "cpuacct" in v1:
                dirs["cpuacct"] = cgroups.host_dir("cpuacct", paths["cpuacct"])
        return Cgroup.wrap(name, {c: d for c, d in dirs.items() if d is not None})
    unified = cgroups.host_dir("", paths[""]) if "" in paths else None
    return Cgroup.wrap(name, {"": unified}) if unified is not None else None


def cpu_usage(pid: int) -> dict[str, float]:
    """cpu_usage_ns and CFS throttling counters of the domain's cgroup, v1 or v2."""
    cg = domain_cgroup(pid)
    if cg is None:
        return {}
    u = {k: v for k, v in cg.usage().items() if k.startswith("cpu_")}
    if cg.version == 1 and "cpu_usage_ns" not in u:
        # no cpuacct of the domain: the QEMU process's own CPU time, which is all the
        # domain's cgroup would count (exited threads included)
        t = psutil.Process(pid).cpu_times()
        u["cpu_usage_ns"] = round((t.user + t.system) * 1e9)
    return u


def qemu_process(name: str, uri: str) -> psutil.Process | None:
    """The QEMU of domain ``name``: libvirt's pid file, else its ``-name guest=NAME`` argument."""
    candidates = [Path("/run/libvirt/qemu") / f"{name}.pid"]
    if uri.endswith("/session"):
        candidates.append(Path.home() / ".config/libvirt/qemu/run" / f"{name}.pid")
    for pidfile in candidates:
        with contextlib.suppress(OSError, ValueError, psutil.Error):
            return psutil.Process(int(pidfile.read_text().strip()))
    needle = f"guest={name},"
    for p in psutil.process_iter(["cmdline"]):
        if any(needle in a or a == f"guest={name}" for a in p.info["cmdline"] or []):
            return p
    return None
