"""Synthetic run directories for the statistics/report/compare/validate tests.

Written through the real ``harness.results.RunWriter`` with the metric names
and params the measurements write, so the readers are tested on the format
they will meet.  Values are plausible but made up (seeded).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from harness.results import MANIFEST, RunWriter, Sample

ALL = ("startup", "memory", "density", "cpu_quota", "mem_limit", "pids_limit")

# backend -> (launch_to_ready ms, {phase: ms}, pss_overhead MiB, density MiB/instance)
PROFILE: dict[str, tuple[float, dict[str, float], float, float]] = {
    "bare": (1.0, {"phase_exec": 0.6}, 0.0, 0.4),
    "container": (12.0, {"phase_cgroup_create": 0.1, "phase_clone": 3.5, "phase_mounts": 1.5,
                         "phase_exec": 0.8}, 0.9, 1.3),
    "vm": (9000.0, {"phase_domain_create": 400.0, "phase_qemu_start": 300.0, "phase_guest_kernel": 4000.0,
                    "phase_guest_init": 250.0}, 180.0, 250.0),
    "oci:runc": (30.0, {}, 2.5, 3.0),
    "qemu": (8500.0, {"phase_qemu_start": 300.0, "phase_guest_kernel": 4000.0}, 160.0, 240.0),
}


def host(name: str = "hostA", kernel: str = "6.1.0-56-amd64") -> dict[str, Any]:
    return {"hostname": name, "kernel": kernel, "cpu_model": "Synthetic CPU @ 2.0GHz", "cores": 2,
            "cgroup": {"version": 1, "mode": "hybrid"}}


def make_run(results_dir: Path, *, hostname: str = "hostA", kernel: str = "6.1.0-56-amd64",
             backends: Iterable[str] = ("bare", "container", "vm"), accel: str = "tcg",
             measurements: Iterable[str] = ALL, reps: int = 10, seed: int = 0,
             scale: Callable[[str, str, str], float] | None = None, finish: bool = True,
             run_id: str | None = None, overrides: Mapping[str, Any] | None = None) -> Path:
    """A run directory with every measurement for ``backends``.

    ``scale(backend, measurement, metric)`` multiplies values (a synthetic regression);
    ``overrides`` {(backend, metric): value} fixes enforcement outcomes (a synthetic violation).
    ``finish=False`` leaves the manifest ``running`` as a killed run would.
    """
    rng = np.random.default_rng(seed)
    backends = list(backends)
    manifest = {"host": host(hostname, kernel), "scenario": {"name": "synthetic"},
                "backends": {b: ({"accel": accel} if b in ("vm", "qemu") else {}) for b in backends}}
    w = RunWriter(results_dir, manifest, run_id=run_id)
    sc = scale or (lambda b, m, k: 1.0)
    ov = dict(overrides or {})

    def add(b: str, wl: str, m: str, metric: str, value: float | None, unit: str, params: Mapping[str, Any],
            rep: int, *, warmup: bool = False, status: str = "ok", error: str | None = None,
            note: str | None = None) -> None:
        if value is not None:
            value = ov.get((b, metric), float(value) * sc(b, m, metric))
        w.add(Sample(b, wl, m, metric, value, unit, dict(params), rep, warmup, status, error,
                     accel if b in ("vm", "qemu") else None, note,
                     "/".join([m, wl, *(f"{k}={v}" for k, v in sorted(params.items()))])))

    for m in measurements:
        for b in backends:
            GENERATORS[m](add, rng, b, reps)
    if finish:
        w.finish("completed")
    else:
        os.close(w._fd)  # a killed run never rewrites its manifest (the kernel closes its file)
    return w.dir


def _startup(add, rng, b, reps):  # type: ignore[no-untyped-def]
    ready, phases, _, _ = PROFILE[b]
    for wl in ("noop", "idle"):
        for rep in range(-1, reps):
            warm = rep < 0
            r = ready * rng.lognormal(0, 0.05)
            add(b, wl, "startup", "launch_to_ready", r, "ms", {}, max(rep, 0), warmup=warm)
            if wl == "noop":
                add(b, wl, "startup", "launch_to_exit", r * 1.1, "ms", {}, max(rep, 0), warmup=warm)
            clean = ready * 0.2 * rng.lognormal(0, 0.05)
            add(b, wl, "startup", "exit_to_clean", clean, "ms", {}, max(rep, 0), warmup=warm)
            add(b, wl, "startup", "launch_to_clean", r * 1.1 + clean, "ms", {}, max(rep, 0), warmup=warm)
            for p, v in phases.items():
                add(b, wl, "startup", p, v * rng.lognormal(0, 0.05), "ms", {}, max(rep, 0), warmup=warm)
    if b == "vm":  # one failed launch, as a TCG guest that timed out would leave
        add(b, "noop", "startup", "launch_to_ready", None, "ms", {}, reps, status="failed",
            error="InstanceTimeout: guest did not become ready in 60 s")


def _memory(add, rng, b, reps):  # type: ignore[no-untyped-def]
    _, _, over, _ = PROFILE[b]
    for rep in range(reps):
        o = over + rng.normal(0, 0.05 + over * 0.02)
        add(b, "idle", "memory", "pss", 0.3 + o, "MiB", {}, rep)
        add(b, "idle", "memory", "uss", 0.2 + o * 0.9, "MiB", {}, rep)
        add(b, "idle", "memory", "rss", 1.5 + o * 1.2, "MiB", {}, rep)
        add(b, "idle", "memory", "pss_overhead", o, "MiB", {}, rep)
        add(b, "idle", "memory", "uss_overhead", o * 0.9, "MiB", {}, rep)


def _density(add, rng, b, reps):  # type: ignore[no-untyped-def]
    _, _, _, slope = PROFILE[b]
    for rep in range(min(reps, 3)):
        for k in range(7):
            add(b, "idle", "density", "mem_available", 20000 - slope * k + rng.normal(0, 0.5 + slope * 0.02),
                "MiB", {"instances": k}, rep)
        add(b, "idle", "density", "density_slope", slope, "MiB/instance", {}, rep)
        add(b, "idle", "density", "density_r2", 0.99, "ratio", {}, rep)


def _cpu_quota(add, rng, b, reps):  # type: ignore[no-untyped-def]
    for threads in (1, 2):
        for quota in (0.25, 0.5, 1.0, 1.5):
            params = {"quota": quota, "threads": threads, "period_ms": 100}
            expected = min(quota, threads, 2)
            bias = 0.97 if b == "vm" else 1.0
            note = "libvirt <cputune> on the QEMU process" if b == "vm" else None
            for rep in range(min(reps, 5)):
                d = expected * bias * rng.normal(1, 0.005)
                add(b, "cpu", "cpu_quota", "cpu_delivered", d, "cpus", params, rep, note=note)
                add(b, "cpu", "cpu_quota", "cpu_expected", expected, "cpus", params, rep, note=note)
                add(b, "cpu", "cpu_quota", "cpu_ratio", d / expected, "ratio", params, rep, note=note)
                add(b, "cpu", "cpu_quota", "nr_periods", 26, "count", params, rep, note=note)
                add(b, "cpu", "cpu_quota", "nr_throttled", 25 if quota < threads else 0, "count", params, rep)
                add(b, "cpu", "cpu_quota", "throttled_share", 25 / 26 if quota < threads else 0, "ratio", params, rep)
                for q, v in ((1, 0.9), (50, 1.0), (99, 1.1)):
                    add(b, "cpu", "cpu_quota", f"period_ratio_p{q}", v * d / expected, "ratio", params, rep)


def _mem_limit(add, rng, b, reps):  # type: ignore[no-untyped-def]
    for limit, mib in ((64, 32), (64, 128)):
        params = {"limit_mib": limit, "mib": mib}
        note = "guest memory size is the limit" if b == "vm" else None
        for rep in range(min(reps, 3)):
            killed = int(mib > limit)
            add(b, "mem", "mem_limit", "oom_killed", killed, "bool", params, rep, note=note)
            if killed:
                add(b, "mem", "mem_limit", "oom_time_ms", 120 * rng.lognormal(0, 0.1), "ms", params, rep)
            add(b, "mem", "mem_limit", "mem_peak", min(mib + 2.5, limit), "MiB", params, rep, note=note)
            add(b, "mem", "mem_limit", "mem_limit", limit, "MiB", params, rep, note=note)


def _pids_limit(add, rng, b, reps):  # type: ignore[no-untyped-def]
    for limit, count in ((16, 8), (16, 32)):
        params = {"limit": limit, "count": count}
        for rep in range(min(reps, 3)):
            add(b, "pids", "pids_limit", "pids_reached", min(count + 1, limit), "count", params, rep)
            add(b, "pids", "pids_limit", "pids_tried", min(count, limit), "count", params, rep)
            add(b, "pids", "pids_limit", "pids_refused", int(count >= limit), "count", params, rep)
            add(b, "pids", "pids_limit", "pids_limit", limit, "count", params, rep)


GENERATORS = {"startup": _startup, "memory": _memory, "density": _density, "cpu_quota": _cpu_quota,
              "mem_limit": _mem_limit, "pids_limit": _pids_limit}


def dead_pid() -> int:
    """The pid of a process that has exited (for an 'interrupted' manifest)."""
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def interrupt(run_dir: Path) -> None:
    """Make a finished-looking writer look killed: status running, writer pid dead."""
    path = run_dir / MANIFEST
    m = json.loads(path.read_text())
    m["status"] = "running"
    m["ended"] = None
    m["writer"]["pid"] = dead_pid()
    path.write_text(json.dumps(m))
