"""harness.measure.context: what the runner's context owns, and its last word on instances left live."""

from __future__ import annotations

import os
from pathlib import Path

import runtimes
from harness.measure.context import Context
from runtimes.workloads import Workload


def test_instances_a_measurement_leaves_live_are_cleaned_by_the_context(tmp_path: Path) -> None:
    """The runner's last word (``Context.cleanup_live``) removes what a measurement did not."""
    ctx = Context(run_id="leak", log_dir=tmp_path)
    backend = runtimes.get(runtimes.reference())
    inst = ctx.launch(backend, ctx.spec(backend, Workload("idle"), timeout_s=30))
    inst.wait_ready(30)
    (pid,) = inst.processes()
    ctx.cleanup_live()
    assert inst.times.t_clean is not None and ctx.live == []
    assert not os.path.exists(f"/proc/{pid}") or "Z" in Path(f"/proc/{pid}/stat").read_text().split(")")[1][:3]
