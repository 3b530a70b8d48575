"""Small defects found by trying isobench as a new user would (issue 10), each pinned down."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

import runtimes
from harness.measure.context import Context
from harness.report import model, render
from runtimes.workloads import Workload
from tests import synth


def test_the_hosts_table_keeps_the_host_accelerator_beside_the_guests(tmp_path: Path) -> None:
    """A host's own accelerator (a GPU) and how the guests ran (kvm/tcg) are two facts."""
    run = synth.make_run(tmp_path, backends=("bare", "vm"), measurements=("startup",), reps=2)
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["host"]["accelerator"] = "NVIDIA H100 80GB HBM3, 550.54.15"
    (run / "manifest.json").write_text(json.dumps(manifest))
    facts = render.hosts_table(model.load([run]))
    table = dict(zip(facts[""], facts.iloc[:, 1], strict=True))
    assert table["accelerator"] == "NVIDIA H100 80GB HBM3, 550.54.15"
    assert table[render.GUEST_ACCELERATOR] == "vm: emulated (TCG)"


def test_the_oci_doctor_line_uses_the_backends_lookup(monkeypatch: pytest.MonkeyPatch) -> None:
    """runc lives in /usr/sbin on Debian, off a user's PATH: doctor finds it where the backend does."""
    from runtimes.oci import RUNTIMES, checks, find_runtime

    monkeypatch.setenv("PATH", "/nonexistent")
    (line,) = checks.checks()
    found = [r for r in RUNTIMES if find_runtime(r)]
    assert line.ok == (found == list(RUNTIMES)) and line.detail == (", ".join(found) or "none")
    if os.path.exists("/usr/sbin/runc"):
        assert "runc" in line.detail  # `which runc` under this PATH would have missed it
    assert shutil.which("runc") is None


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
