"""Host metadata recorded with every run, in the style of pyperf's collectors.

Each collector is a small function that returns a dict and may fail: a
missing file or tool yields nothing rather than aborting the run.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import shutil
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import runtimes
from runtimes import cgroups

Collector = Callable[[], dict[str, Any]]
COLLECTORS: list[Collector] = []
PACKAGES = ("isobench", "pandas", "matplotlib", "psutil", "pyroute2", "libvirt-python",
            "pytest-benchmark", "scipy", "tqdm")


def collector(fn: Collector) -> Collector:
    COLLECTORS.append(fn)
    return fn


def _read(path: str) -> str | None:
    with contextlib.suppress(OSError):
        return Path(path).read_text().strip()
    return None


def _cmd(*argv: str) -> str | None:
    if shutil.which(argv[0]) is None:
        return None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
        if out.returncode == 0:
            lines = (out.stdout or out.stderr).strip().splitlines()
            return lines[0] if lines else ""
    return None


@collector
def _system() -> dict[str, Any]:
    u = os.uname()
    return {"hostname": socket.gethostname(), "kernel": u.release, "kernel_version": u.version,
            "arch": u.machine, "python": platform.python_version(),
            "os": (_read("/etc/os-release") or "").partition('PRETTY_NAME="')[2].partition('"')[0]}


@collector
def _cpu() -> dict[str, Any]:
    model = None
    for line in (_read("/proc/cpuinfo") or "").splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return {"cpu_model": model, "cores": os.cpu_count(),
            "governor": _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"),
            "smt": _read("/sys/devices/system/cpu/smt/active")}


@collector
def _memory() -> dict[str, Any]:
    for line in (_read("/proc/meminfo") or "").splitlines():
        if line.startswith("MemTotal:"):
            return {"mem_total_mib": int(line.split()[1]) // 1024}
    return {}


@collector
def _load() -> dict[str, Any]:
    with contextlib.suppress(OSError):
        return {"loadavg": list(os.getloadavg())}
    return {}


@collector
def _cgroup() -> dict[str, Any]:
    with contextlib.suppress(OSError):
        return {"cgroup": cgroups.describe()}
    return {}


@collector
def _virt() -> dict[str, Any]:
    tools: dict[str, Any] = {}
    for d in runtimes.declarations():  # the tools backends run (e.g. the emulator), as they declare them
        for key, argv in d.tools.items():
            if key not in tools:
                tools[key] = _cmd(*argv)
    return {"kvm_device": os.path.exists("/dev/kvm"), **tools,
            "stress_ng": _cmd("stress-ng", "--version"),
            "busybox": (_cmd("busybox") or "").split(" multi-call")[0] or None,
            # the throughput benchmarks' tools
            **{tool: _cmd(tool, "--version") for tool in ("fio", "iperf3", "sockperf")}}


@collector
def _accelerator() -> dict[str, Any]:
    """A GPU or other accelerator on the host, if any (recorded, not used)."""
    gpu = _cmd("nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader")
    return {"accelerator": gpu or "none"}


@collector
def _versions() -> dict[str, Any]:
    versions = {}
    for p in PACKAGES:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[p] = importlib.metadata.version(p)
    return {"packages": versions}


@collector
def _git() -> dict[str, Any]:
    here = Path(__file__).resolve().parent.parent
    commit = _cmd("git", "-C", str(here), "rev-parse", "HEAD")
    dirty = _cmd("git", "-C", str(here), "status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(dirty)} if commit else {}


def collect() -> dict[str, Any]:
    meta: dict[str, Any] = {}
    for fn in COLLECTORS:
        with contextlib.suppress(Exception):
            meta.update(fn())
    return meta
