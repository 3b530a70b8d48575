"""Runs a scenario: expands the matrix, interleaves backends, stores every sample.

Backends are interleaved in shuffled blocks (``harness.schedule``) so that drift
of the host (thermal, page cache, a noisy neighbour) and the cost left behind
by the previous launch hit every backend alike.  A
failing sample is recorded with its reason and the run goes on; Ctrl-C or
SIGTERM ends the run as ``interrupted`` after the instance in flight was
cleaned up, keeping every completed sample.

One ``ExitStack`` owns everything the run opens (mkosi's and Firecracker's
factory style): every backend (closed last, in reverse order) and every live
instance a measurement launched and did not clean up itself (cleaned first).
"""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import runtimes
from harness import metadata
from harness.errors import UserError
from harness.measure import MEASUREMENTS
from harness.measure.common import image_digest
from harness.measure.context import Context
from harness.results import ResultsError, RunWriter, Sample
from harness.scenario import Scenario
from harness.schedule import Conditions, Step, label, plan
from runtimes import cgroups, owners
from runtimes.base import Backend, BackendError
from runtimes.cgroups import CgroupError


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


def open_backends(names: list[str], skip_unavailable: bool, stack: contextlib.ExitStack,
                  skipped: dict[str, str] | None = None) -> dict[str, Backend]:
    """Instantiate, check and prepare each backend before any sample; ``stack`` closes them.
    A backend declared ``optional`` (a peer) that cannot run is skipped with its reason, as
    every unavailable one is with ``skip_unavailable``; ``skipped`` receives name -> reason."""
    backends: dict[str, Backend] = {}
    problems: list[str] = []
    optional: list[str] = []
    for name in names:
        reason = _open(name, stack, backends)
        if reason is None:
            continue
        (optional if runtimes.declaration(name).optional else problems).append(f"{name}: {reason}")
        if skipped is not None:
            skipped[name] = reason
    if problems and not skip_unavailable:
        raise UserError("backend unavailable: " + "; ".join(problems)
                        + " (run `isobench doctor --fix`, or pass --skip-unavailable)")
    for p in problems + optional:
        print(f"isobench: skipping {p}", file=sys.stderr)
    if not backends:
        raise UserError("no backend of this scenario can run here (see `isobench doctor`)")
    return backends


def _open(name: str, stack: contextlib.ExitStack, backends: dict[str, Backend]) -> str | None:
    """Open, check and prepare backend ``name`` into ``backends``; None, or why it cannot run."""
    try:
        b = stack.enter_context(runtimes.get(name))
    except ImportError as e:
        return f"backend not installed ({e})"
    reason = b.available()
    if reason is None:
        try:
            b.prepare()  # the expensive one-off step (a guest's accelerator probe), explicitly
        except BackendError as e:
            reason = f"cannot prepare: {e}"
    if reason is None:
        backends[name] = b
    return reason


def _progress(steps: list[Step], enabled: bool | None) -> Any:
    """A bar on a terminal, a line every 10 s without one (CI logs), nothing when disabled."""
    from harness import progress

    return progress.reporter(len(steps), enabled, kinds=[f"{s.backend} {s.case.measurement}" for s in steps])


#: what watches a run from outside its samples (``harness.soak``): called before the first step,
#: after every step and after the last (the backends still open), between launches (never inside
#: one), with the steps done so far, the step just done (None before the first and after the
#: last), the open backends and the run directory
Observer = Callable[[int, Step | None, Mapping[str, Backend], Path], None]


def run(scenario: Scenario, results_dir: Path, backend_names: list[str] | None = None,
        progress: bool | None = None, skip_unavailable: bool = False,
        run_id: str | None = None, observe: Observer | None = None) -> Path:
    names = backend_names or scenario.backends
    with contextlib.suppress(CgroupError, OSError):  # a real problem resurfaces, per sample
        cgroups.prepare()
    with contextlib.ExitStack() as stack:
        skipped: dict[str, str] = {}
        backends = open_backends(names, skip_unavailable, stack, skipped)
        run_dir = _run(scenario, results_dir, backends, progress, run_id, stack, skipped, observe)
    # every instance and backend is closed: nothing of the run is left to spare from a sweep
    owners.release(run_dir.name)
    return run_dir


def _run(scenario: Scenario, results_dir: Path, backends: dict[str, Backend], progress: bool | None,
         run_id: str | None, stack: contextlib.ExitStack, skipped: dict[str, str],
         observe: Observer | None = None) -> Path:
    backend_meta = {name: b.metadata() for name, b in backends.items()}
    accel = {name: m["accel"] for name, m in backend_meta.items() if m.get("accel")}
    steps = plan(scenario.cases, list(backends), accel, scenario.seed)
    writer = RunWriter(results_dir, {
        "scenario": {"path": scenario.path, "name": scenario.name, "reference": scenario.reference,
                     "description": scenario.description, "text": scenario.text},
        "argv": sys.argv,
        "backends": backend_meta,
        "skipped_backends": skipped,  # name -> why it could not run here (the run went on without it)
        "host": metadata.collect(),
        "planned_steps": len(steps),
        "schedule": {"seed": scenario.seed, "order": "shuffled blocks, spread repetitions (harness.schedule)"},
        # each image workload: its image's name, digests and layers, and the process it runs
        "workloads": {c.workload.name: c.workload.describe() for c in scenario.cases if c.workload.image},
    }, run_id)
    owners.claim(writer.run_id)  # `isobench cleanup` leaves this run's objects alone while it lives
    # the workloads' logs: written by root from untrusted output, readable by root only
    (writer.dir / "logs").mkdir(mode=0o700, exist_ok=True)
    ctx = Context(run_id=writer.run_id, log_dir=writer.dir / "logs", accel=accel,
                  backend_options=scenario.backend_options, backends=dict(backends), stack=stack)
    # registered after the backends: runs before they close (what a measurement left live goes first)
    stack.callback(ctx.cleanup_live)
    status = "interrupted"
    ending = True  # an exception ends the run: it, not a later one of the manifest's, is what is shown
    done = 0  # counted here: the progress bar does not count when it is disabled
    bar = _progress(steps, progress)
    try:
        conditions, previous = Conditions(), None
        with sigterm_unwinds():
            if observe is not None:
                observe(0, None, backends, writer.dir)
            for step in steps:
                bar.set_postfix_str(f"{step.backend} {step.case.id}"[:60])
                pred, cond = label(previous), conditions.read()
                writer.add_all(replace(s, position=done, predecessor=pred, conditions=cond)
                               for s in _execute(backends[step.backend], step, ctx))
                previous = step
                done += 1
                if observe is not None:
                    observe(done, step, backends, writer.dir)
                bar.update(1)
                if done % 20 == 1:
                    writer.update(done_steps=done)
            if observe is not None and done:
                observe(done, None, backends, writer.dir)
        status, ending = "completed", False
    finally:
        bar.close()
        try:
            # again at the end: a backend's metadata records what its launches ran (e.g. which
            # launcher and zygote, after the scenario's per-launch options), not only its defaults
            writer.update(done_steps=done, backends=_final_metadata(backends, backend_meta))
            writer.finish(status)
        except ResultsError:
            if not ending:
                raise
    return writer.dir


def _final_metadata(backends: dict[str, Backend], first: dict[str, Any]) -> dict[str, Any]:
    out = dict(first)
    for name, b in backends.items():
        with contextlib.suppress(Exception):  # the run's results matter more than a late detail
            out[name] = b.metadata()
    return out


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
                       error=f"{type(e).__name__}: {e}", accel=ctx.accel.get(backend.name), case=case.id,
                       image=image_digest(case))]
