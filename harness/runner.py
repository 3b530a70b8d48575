"""Runs a scenario: expands the matrix, interleaves backends, stores every sample.

Backends are interleaved per repetition (A B C A B C …) so that drift of the
host (thermal, page cache, a noisy neighbour) hits every backend alike.  A
failing sample is recorded with its reason and the run goes on; Ctrl-C or
SIGTERM ends the run as ``interrupted`` after the instance in flight was
cleaned up, keeping every completed sample.
"""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import runtimes
from harness import metadata
from harness.errors import UserError
from harness.measure import MEASUREMENTS
from harness.measure.context import Context
from harness.results import RunWriter, Sample
from harness.scenario import Case, Scenario
from runtimes import cgroups
from runtimes.base import Backend
from runtimes.cgroups import CgroupError


@dataclass(frozen=True)
class Step:
    case: Case  # already resolved for the backend (overrides applied)
    backend: str
    repetition: int
    warmup: bool


def plan(cases: list[Case], backends: list[str], accel: dict[str, str]) -> list[Step]:
    """Every (case, repetition, backend), backends interleaved within a case."""
    steps: list[Step] = []
    for case in cases:
        per_backend = {b: case.for_backend(b, accel.get(b)) for b in backends
                       if not case.skipped_on(b, accel.get(b))}
        longest = max((c.warmups + c.repetitions for c in per_backend.values()), default=0)
        for i in range(longest):
            for b, c in per_backend.items():
                if i < c.warmups:
                    steps.append(Step(c, b, i, True))
                elif i < c.warmups + c.repetitions:
                    steps.append(Step(c, b, i - c.warmups, False))
    return steps


class Interrupted(KeyboardInterrupt):
    """SIGTERM, unwound like Ctrl-C so every ``finally`` cleans up (and no
    ``except Exception`` in a measurement swallows it)."""


@contextlib.contextmanager
def sigterm_unwinds() -> Iterator[None]:
    def handler(signum: int, frame: Any) -> None:
        raise Interrupted(f"signal {signum}")

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def open_backends(names: list[str], skip_unavailable: bool) -> dict[str, Backend]:
    """Instantiate and check each backend before anything is created."""
    backends: dict[str, Backend] = {}
    problems = []
    for name in names:
        try:
            b = runtimes.get(name)
            reason = b.available()
        except ImportError as e:
            reason = f"backend not installed ({e})"
        if reason is None:
            backends[name] = b
        else:
            problems.append(f"{name}: {reason}")
    if problems and not skip_unavailable:
        raise UserError("backend unavailable: " + "; ".join(problems)
                        + " (run `isobench doctor --fix`, or pass --skip-unavailable)")
    for p in problems:
        print(f"isobench: skipping {p}", file=sys.stderr)
    if not backends:
        raise UserError("no backend of this scenario can run here (see `isobench doctor`)")
    return backends


def _progress(total: int, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, unit="sample", disable=not enabled, dynamic_ncols=True,
                bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}] {postfix}")


def run(scenario: Scenario, results_dir: Path, backend_names: list[str] | None = None,
        progress: bool | None = None, skip_unavailable: bool = False,
        run_id: str | None = None) -> Path:
    names = backend_names or scenario.backends
    with contextlib.suppress(CgroupError, OSError):  # a real problem resurfaces, per sample
        cgroups.prepare()
    backends = open_backends(names, skip_unavailable)
    try:
        return _run(scenario, results_dir, backends, sys.stderr.isatty() if progress is None else progress, run_id)
    finally:
        for b in backends.values():
            with contextlib.suppress(Exception):
                b.close()


def _run(scenario: Scenario, results_dir: Path, backends: dict[str, Backend], progress: bool,
         run_id: str | None) -> Path:
    for b in backends.values():  # the explicit host step (e.g. the vm accelerator probe)
        b.prepare()
    backend_meta = {name: b.metadata() for name, b in backends.items()}
    accel = {name: m["accel"] for name, m in backend_meta.items() if m.get("accel")}
    steps = plan(scenario.cases, list(backends), accel)
    writer = RunWriter(results_dir, {
        "scenario": {"path": scenario.path, "name": scenario.name,
                     "description": scenario.description, "text": scenario.text},
        "argv": sys.argv,
        "backends": backend_meta,
        "host": metadata.collect(),
        "planned_steps": len(steps),
    }, run_id)
    ctx = Context(run_id=writer.run_id, log_dir=writer.dir / "logs", accel=accel,
                  backend_options=scenario.backend_options)
    status = "interrupted"
    bar = _progress(len(steps), progress)
    try:
        with sigterm_unwinds():
            for i, step in enumerate(steps):
                bar.set_postfix_str(f"{step.backend} {step.case.id}"[:60])
                writer.add_all(_execute(backends[step.backend], step, ctx))
                bar.update(1)
                if i % 20 == 0:
                    writer.update(done_steps=i + 1)
        status = "completed"
    finally:
        bar.close()
        writer.update(done_steps=bar.n)
        writer.finish(status)
    return writer.dir


def _execute(backend: Backend, step: Step, ctx: Context) -> list[Sample]:
    case = step.case
    try:
        return MEASUREMENTS[case.measurement](backend, case, ctx, step.repetition, step.warmup)
    except (KeyboardInterrupt, Interrupted):
        raise
    except Exception as e:  # recorded, not fatal: one bad sample must not lose a run
        return [Sample(backend=backend.name, workload=case.workload.name, measurement=case.measurement,
                       metric="error", value=None, unit="", params=dict(case.params),
                       repetition=step.repetition, warmup=step.warmup, status="failed",
                       error=f"{type(e).__name__}: {e}", accel=ctx.accel.get(backend.name), case=case.id)]
