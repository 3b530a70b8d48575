"""isobench ab: the interleaved order, the variants, the injection facility, paired verdicts, and
real sessions (options and commits) on this host."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness import cleanup as harness_cleanup
from harness.ab import inject, leftovers, session, variants
from harness.commands import ab as command
from harness.errors import UserError
from tests import synth

ROOT = Path(__file__).resolve().parent.parent

TINY = """\
[scenario]
name = "tiny"
backends = ["bare"]
repetitions = 6
warmups = 1
timeout = 30

[[experiment]]
measurement = "startup"
workloads = ["noop"]
"""


def _args(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    command.add_arguments(p)
    return p.parse_args([*argv, "--bootstraps", "199"])


def test_the_order_is_a_b_b_a_so_a_steady_drift_cancels_in_every_block_of_four():
    assert [f"{s}{j + 1}" for j, s in session.order(3)] == ["A1", "B1", "B2", "A2", "A3", "B3"]
    positions = {s: [i for i, (_, x) in enumerate(session.order(4)) if x == s] for s in "AB"}
    assert sum(positions["A"]) == sum(positions["B"])  # a linear drift moves both sides alike


def test_a_variant_sets_scenario_keys_or_names_a_commit():
    v = variants.parse("B", ["backend.container.seccomp=unconfined", "scenario.repetitions=10",
                             'experiment.0.workloads=["noop"]', "commit=HEAD~1"])
    assert v.commit == "HEAD~1"
    data = variants.scenario_data(TINY, v)
    assert data["backend"]["container"]["seccomp"] == "unconfined" and data["scenario"]["repetitions"] == 10
    assert data["experiment"][0]["workloads"] == ["noop"]
    assert "seccomp = \"unconfined\"" in variants.scenario_text(TINY, v)
    for bad in (["seccomp"], ["=1"], ["x="]):
        with pytest.raises(UserError, match="expected KEY=VALUE"):
            variants.parse("A", bad)
    with pytest.raises(UserError, match="has no entry 3"):
        variants.scenario_data(TINY, variants.parse("A", ["experiment.3.repetitions=2"]))


def test_an_injection_is_parsed_strictly_and_said():
    i = inject.Injection.parse("backend=container,metric=launch_to_ready,factor=1.15")
    assert (i.backend, i.metric, i.factor) == ("container", "launch_to_ready", 1.15)
    assert "INJECTED" in inject.notice([i]) and "container launch_to_ready x1.15" in inject.notice([i])
    for bad, why in (("backend=container,factor=2", "missing metric"), ("backend=a,metric=b,factor=-1", "positive"),
                     ("backend=a,metric=b,factor=x", "a number"), ("colour=red", "expected")):
        with pytest.raises(UserError, match=why):
            inject.Injection.parse(bad)


def _session(tmp_path: Path, k: int = 3) -> Path:
    """A completed session of synthetic runs: both sides the same profile, other draws."""
    s = session.Session(tmp_path / "tiny.toml", variants.Variant("A"), variants.Variant("B"), k, tmp_path / "results",
                        session_id="ab-synthetic")
    s.dir.mkdir(parents=True)
    for j, side in session.order(k):
        s.run_dirs[side].append(synth.make_run(s.dir, run_id=f"ab-synthetic-{side}{j + 1}", measurements=("startup",),
                                               reps=20, seed=100 + 2 * j + (side == "B")))
    s.write_record()
    return s.dir


def test_identical_sides_regress_nothing_and_an_injected_15_percent_names_exactly_its_rows(tmp_path, capsys):
    d = _session(tmp_path)
    assert command.main(_args("--reuse", str(d))) == 0
    out = capsys.readouterr().out
    assert "**regression**" not in out and "paired run medians" in out and "planning:" in out
    spec = ["--inject", "backend=container,metric=launch_to_ready,factor=1.15",
            "--inject", "backend=container,metric=launch_to_exit,factor=1.15"]
    assert command.main(_args("--reuse", str(d), *spec)) == 1
    out = capsys.readouterr().out
    assert "INJECTED (validation, not measured)" in out
    record = json.loads((d / session.RECORD).read_text())
    assert record["inject"] == ["container launch_to_ready x1.15", "container launch_to_exit x1.15"]
    # every series the injection touched (idle instances do not exit: no launch_to_exit), nothing else
    assert sorted(record["regressions"]) == ["container startup/idle launch_to_ready",
                                             "container startup/noop launch_to_exit",
                                             "container startup/noop launch_to_ready"]


def test_bad_input_is_one_line(tmp_path, capsys):
    assert command.main(_args(str(tmp_path / "none.toml"))) == 2
    assert "no such scenario file" in capsys.readouterr().err
    (tmp_path / "tiny.toml").write_text(TINY)
    assert command.main(_args(str(tmp_path / "tiny.toml"), "--runs", "1")) == 2
    assert "at least 2" in capsys.readouterr().err
    assert command.main(_args(str(tmp_path / "tiny.toml"), "--b", "scenario.repetitions=-3")) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--b:" in err and "repetitions" in err
    assert command.main(_args("--reuse", str(tmp_path))) == 2
    assert "not an isobench ab session" in capsys.readouterr().err
    assert command.main(_args("--reuse", str(_session(tmp_path, 2)), "--inject", "factor=2")) == 2


def test_a_directory_it_cannot_write_is_refused_before_anything_runs(tmp_path, capsys):
    (tmp_path / "tiny.toml").write_text(TINY)
    (tmp_path / "afile").write_text("")
    for option, where in (("--results", "/proc/isobench-ab-test"), ("--results", str(tmp_path / "afile" / "x")),
                          ("--out", str(tmp_path / "afile"))):
        assert command.main(_args(str(tmp_path / "tiny.toml"), option, where)) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and f"{option} {where}: cannot create or write this directory" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "tiny.toml"]


def _of(tree: Path, removed: list[str]) -> list[str]:
    return [line for line in removed if str(tree) in line]


@pytest.mark.privileged  # isobench cleanup's sweeps
def test_cleanup_removes_the_worktree_of_a_killed_ab_and_spares_a_live_ones(tmp_path):
    """A SIGKILLed ``isobench ab`` of a commit leaves its worktree: ``isobench cleanup`` removes it
    once the process is gone (its name carries it), not before."""
    session_dir = tmp_path / f"ab-test-{tmp_path.name}"
    session_dir.mkdir()
    script = ("import sys, time\nfrom pathlib import Path\nfrom harness.ab.variants import checkout\n"
              "with checkout('HEAD', Path(sys.argv[1]), 'A') as (py, tree):\n"
              "    print(tree, flush=True)\n    time.sleep(600)\n")
    proc = subprocess.Popen([sys.executable, "-c", script, str(session_dir)], cwd=ROOT, stdout=subprocess.PIPE,
                            text=True)
    tree = session_dir / "not-made-yet"  # (the finally below sweeps whatever came of it)
    try:
        assert proc.stdout is not None
        tree = Path(proc.stdout.readline().strip())
        assert tree.is_dir() and tree.parent == session_dir
        made_by = leftovers.owner(tree)
        assert made_by is not None and made_by.pid == proc.pid and made_by.alive()
        # (a host's other leftovers, such as a dead harness's devices cgroup, may go too: not counted)
        assert _of(tree, harness_cleanup.cleanup(session_dir.name)) == [] and tree.is_dir()  # its ab lives: spared
    finally:
        proc.kill()
        proc.wait()
        removed = _of(tree, harness_cleanup.cleanup(session_dir.name))
    assert removed == [f"ab worktree {tree} (of isobench ab {proc.pid}, which is gone)"]
    assert not tree.exists()
    listed = subprocess.run(["git", "worktree", "list"], cwd=ROOT, capture_output=True, text=True).stdout
    assert str(tree) not in listed


@pytest.mark.privileged
def test_a_real_session_alternates_the_variants_and_records_what_ran(tmp_path, capsys):
    toml = tmp_path / "tiny.toml"
    toml.write_text(TINY)
    code = command.main(_args(str(toml), "--runs", "2", "--b", "scenario.warmups=2", "--results",
                              str(tmp_path / "results")))
    assert code in (0, 1)  # two identical configurations on a shared host: the verdicts are the host's
    d = next((tmp_path / "results").iterdir())
    record = json.loads((d / session.RECORD).read_text())
    assert record["order"] == ["A1", "B1", "B2", "A2"] and record["exit"] == code
    assert record["variants"] == {"A": "the scenario as it is", "B": "scenario.warmups=2"}
    b1 = json.loads((d / record["run_dirs"]["B"][0] / "manifest.json").read_text())
    assert "warmups = 2" in b1["scenario"]["text"] and b1["status"] == "completed"
    assert (d / "compare" / "compare.html").is_file()


@pytest.mark.privileged
def test_a_session_of_two_commits_runs_each_from_its_own_worktree_and_removes_it(tmp_path):
    toml = tmp_path / "tiny.toml"
    toml.write_text(TINY)
    proc = subprocess.run([sys.executable, "-m", "harness", "ab", str(toml), "--runs", "2", "--a", "commit=HEAD",
                           "--b", "commit=HEAD", "--results", str(tmp_path / "results")], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode in (0, 1), proc.stderr
    d = next((tmp_path / "results").iterdir())
    a1 = json.loads((d / f"{d.name}-A1" / "manifest.json").read_text())
    assert variants.PREFIX in a1["argv"][0] or variants.PREFIX in json.dumps(a1["argv"])  # the worktree's venv ran it
    assert not [p for p in d.iterdir() if p.name.startswith(variants.PREFIX)]  # worktree removed
    listed = subprocess.run(["git", "worktree", "list"], cwd=ROOT, capture_output=True, text=True).stdout
    assert str(d) not in listed  # (any other isobench-ab worktree is another session's)
