"""One matrix cell: a (kernel, cgroup mode) guest running ``isobench run`` on this checkout.

The guest writes its run directory into the matrix directory (shared
writable); afterwards the host adds to that manifest what only the host knows:
``guest`` (kernel spec and source, cgroup mode, accelerator, vCPUs, memory)
and ``guest_of`` (this physical host's metadata), and marks every backend's
accelerator so reports label the figures emulated under TCG.  Whatever goes
wrong (no boot, a crash inside, a timeout) gives a failed cell with its reason
and the guest's console log, never an exception.
"""

from __future__ import annotations

import json
import shlex
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness import results
from harness.matrix import guest, modes
from harness.matrix.kernels import Kernel

ROOT = Path(__file__).resolve().parents[2]


class CellInterrupted(KeyboardInterrupt):
    """Ctrl-C while a cell ran (its guest is gone); carries the cell's result."""

    def __init__(self, result: CellResult):
        super().__init__(result.cell)
        self.result = result


@dataclass(frozen=True)
class CellSpec:
    kernel: Kernel
    mode: str  # "v1" | "v2"
    accel: str
    accel_reason: str
    cpus: int = 2
    memory_mib: int = 2048

    @property
    def name(self) -> str:
        return f"{self.kernel.label}-{self.mode}"


@dataclass
class CellResult:
    cell: str
    kernel: str
    mode: str
    accel: str
    status: str  # completed | failed | interrupted
    reason: str = ""
    seconds: float = 0.0
    run_dir: str | None = None
    samples: dict[str, int] = field(default_factory=dict)
    cgroup_notes: list[str] = field(default_factory=list)
    console_log: str = ""


def script(spec: CellSpec, scenario: Path, out_dir: Path, run_id: str, backends: list[str] | None) -> str:
    argv = [sys.executable, "-m", "harness", "run", str(scenario.resolve()), "--results", str(out_dir),
            "--run-id", run_id, "--no-progress"]
    if backends:
        argv += ["--backends", ",".join(backends)]
    return (modes.prelude(spec.mode, str(out_dir / f"{spec.name}.cgroup.txt")) +
            f"cd {shlex.quote(str(ROOT))}\nexport PYTHONDONTWRITEBYTECODE=1\nexec {shlex.join(argv)}\n")


def _cached_paths() -> tuple[str, ...]:
    from harness.matrix.intests import cached_paths

    return cached_paths()


def run_cell(spec: CellSpec, scenario: Path, out_dir: Path, matrix_id: str, backends: list[str] | None,
             timeout_s: float, host_meta: dict[str, Any]) -> CellResult:
    run_id = f"{matrix_id}-{spec.name}"
    log = out_dir / f"{spec.name}.console.log"
    res = CellResult(spec.name, spec.kernel.label, spec.mode, spec.accel, "failed", console_log=log.name)
    g = guest.Guest(spec.kernel.image, accel=spec.accel, cpus=spec.cpus, memory_mib=spec.memory_mib,
                    rw_dirs=(out_dir,), cached_paths=_cached_paths())
    try:
        outcome = guest.run(g, script(spec, scenario, out_dir, run_id, backends), name=f"{matrix_id}-{spec.name}",
                            log=log, timeout_s=timeout_s, cwd=ROOT)
    except KeyboardInterrupt:
        res.status, res.reason = "interrupted", "interrupted (Ctrl-C): guest killed"
        raise CellInterrupted(res) from None
    except guest.GuestError as e:
        res.reason = str(e)
        return res
    finally:
        res.cgroup_notes = _cgroup_notes(out_dir / f"{spec.name}.cgroup.txt")
    res.seconds = round(outcome.seconds, 1)
    run_dir = out_dir / run_id
    if (run_dir / results.MANIFEST).is_file():
        res.run_dir = run_id
        annotate(run_dir, spec, host_meta, res.cgroup_notes)
        res.samples = count_samples(run_dir)
    if outcome.interrupted:
        res.status, res.reason = "interrupted", outcome.detail
    elif outcome.timed_out:
        res.reason = outcome.detail
    elif outcome.status != 0:
        said = outcome.tail(200, console=False).splitlines()
        errors = [line for line in said if line.startswith("isobench: error:")]  # the harness's own words
        last = " | ".join(errors[-1:] or said[-3:]) or outcome.tail(3).replace("\n", " | ")
        res.reason = (f"isobench run exited {outcome.status} inside the guest: {last}" if res.run_dir else
                      f"the guest gave no run directory (exit {outcome.status}): {last}")
    else:
        res.status = "completed"
    return res


def count_samples(run_dir: Path) -> dict[str, int]:
    """ok/failed samples as written (a killed run's manifest never got its counts)."""
    counts: dict[str, int] = {}
    for row in results.read_samples(run_dir):
        counts[str(row.get("status"))] = counts.get(str(row.get("status")), 0) + 1
    return counts


def _cgroup_notes(path: Path) -> list[str]:
    try:
        return [line for line in path.read_text().splitlines() if line.strip()]
    except OSError:
        return []


def annotate(run_dir: Path, spec: CellSpec, host_meta: dict[str, Any], notes: list[str]) -> None:
    """Add what the host knows to the cell's manifest (the guest wrote the rest)."""
    path = run_dir / results.MANIFEST
    m = json.loads(path.read_text())
    from harness.matrix.guest import vng_binary

    m["guest"] = {"kernel": spec.kernel.release, "kernel_spec": spec.kernel.spec, "kernel_label": spec.kernel.label,
                  "kernel_source": spec.kernel.source, "cgroup_mode": spec.mode, "accel": spec.accel,
                  "accel_reason": spec.accel_reason, "vcpus": spec.cpus, "memory_mib": spec.memory_mib,
                  "launcher": f"virtme-ng ({vng_binary()})", "cgroup_setup": notes,
                  "cell": spec.name}
    m["guest_of"] = host_meta
    for meta in (m.get("backends") or {}).values():
        if isinstance(meta, dict):
            meta.setdefault("accel", spec.accel)
    results.write_json_atomic(path, m)


def write_summary(out_dir: Path, cells: list[CellResult], meta: dict[str, Any]) -> Path:
    path = out_dir / "matrix.json"
    results.write_json_atomic(path, {**meta, "cells": [asdict(c) for c in cells]})
    return path

