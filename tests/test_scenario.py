"""Scenario validation: bad files give one clear line and exit 2, and create nothing.

The command line is called in-process (``harness.cli.main``): one interpreter
start for every bad file would cost seconds for nothing; one test runs the real
``python -m harness`` end to end.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness import cli, scenario
from harness.runner import plan

GOOD = """
[scenario]
backends = ["bare", "container"]
repetitions = 3
warmups = 1

[[experiment]]
measurement = "startup"
workloads = ["noop", "idle"]

[[experiment]]
measurement = "cpu_quota"
grid = { quota = [0.5, 1.0], threads = [1, 2], period_ms = [10, 100] }
overrides = { "vm@tcg" = { skip = true }, container = { repetitions = 1 } }
"""

BAD = {
    "toml syntax": ("[scenario\nname = 1", "TOML syntax error"),
    "unknown key": ("[scenario]\ncolour = 'red'\n[[experiment]]\nmeasurement='startup'\nworkloads=['noop']",
                    "scenario.colour: unknown key"),
    "unknown top key": ("[scenarioo]\n", "scenarioo: unknown key"),
    "bad reference": ("[scenario]\nreference='vm'\nbackends=['bare']\n[[experiment]]\nmeasurement='startup'\n"
                      "workloads=['noop']", "scenario.reference: must be one of the scenario's backends"),
    "unknown backend": ("[scenario]\nbackends=['xen']\n[[experiment]]\nmeasurement='startup'\nworkloads=['noop']",
                        "unknown backend 'xen'"),
    "unknown workload": ("[[experiment]]\nmeasurement='startup'\nworkloads=['fork-bomb']", "unknown workload 'fork-bomb'"),
    "unknown measurement": ("[[experiment]]\nmeasurement='io'\n", "unknown measurement 'io'"),
    "zero repetitions": ("[[experiment]]\nmeasurement='startup'\nworkloads=['noop']\nrepetitions=0",
                         "repetitions: must be between 1"),
    "negative repetitions": ("[scenario]\nrepetitions=-3\n[[experiment]]\nmeasurement='startup'\nworkloads=['noop']",
                             "scenario.repetitions: must be between 1"),
    "negative quota": ("[[experiment]]\nmeasurement='cpu_quota'\ngrid={quota=[-0.5], threads=[1]}", "grid.quota"),
    "string quota": ("[[experiment]]\nmeasurement='cpu_quota'\ngrid={quota=['half'], threads=[1]}", "must be a number"),
    "tiny memory limit": ("[[experiment]]\nmeasurement='mem_limit'\ngrid={limit_mib=[1], mib=[8]}", "grid.limit_mib"),
    "missing grid": ("[[experiment]]\nmeasurement='pids_limit'\n", "pids_limit needs limit, count"),
    "no experiments": ("[scenario]\nname='x'\n", "at least one [[experiment]]"),
    "bad override": ("[[experiment]]\nmeasurement='startup'\nworkloads=['noop']\noverrides={vm={colour=1}}",
                     "overrides.vm.colour: cannot be overridden"),
    "bad accel": ("[[experiment]]\nmeasurement='startup'\nworkloads=['noop']\noverrides={'vm@hvf'={repetitions=1}}",
                  "unknown accelerator 'hvf'"),
    "fractional seconds": ("[[experiment]]\nmeasurement='cpu_quota'\nseconds=0.5\ngrid={quota=[1], threads=[1]}",
                           "seconds must be a whole number"),
    "bad workload param": ("[[experiment]]\nmeasurement='startup'\nworkloads=['idle']\nparams={seconds=-1}",
                           "seconds must be >= 1"),
    # UTF-16 with its byte-order mark (ff fe), as some editors save it
    "not utf-8": ("[[experiment]]\nmeasurement='startup'\n".encode("utf-16"), "not UTF-8 text"),
    # accepted, then silently dropped, before: seconds belongs to the workload of every backend
    # accepted, then silently dropped, before: instances is density's own key
    "instances of startup": ("[[experiment]]\nmeasurement='startup'\nworkloads=['noop']\ninstances=4",
                             "experiment[0].instances: unknown key"),
    "instances override of startup": ("[[experiment]]\nmeasurement='startup'\nworkloads=['noop']\n"
                                      "overrides={vm={instances=4}}", "overrides.vm.instances: cannot be overridden"),
    "density's instances": ("[[experiment]]\nmeasurement='density'\ninstances=0", "instances: must be between 1"),
    "measurement not a name": ("[[experiment]]\nmeasurement=['startup']\n", "unknown measurement ['startup']"),
    "seconds override": ("[[experiment]]\nmeasurement='cpu_quota'\nseconds=3\ngrid={quota=[1], threads=[1]}\n"
                         "overrides={container={seconds=1}}", "overrides.container.seconds: cannot be overridden"),
    "unknown backend option": ("[backend.vm]\nvcpu=2\n[[experiment]]\nmeasurement='startup'\nworkloads=['noop']",
                               "backend.vm.vcpu: unknown option of backend vm (known: vcpus, memory_mib, image_root)"),
    "option of a backend without options": ("[backend.bare]\nvcpus=2\n[[experiment]]\nmeasurement='startup'\n"
                                            "workloads=['noop']", "backend.bare.vcpus: unknown option"),
    "backend option type": ("[backend.vm]\nvcpus='two'\n[[experiment]]\nmeasurement='startup'\nworkloads=['noop']",
                            "backend.vm.vcpus: must be an integer, got 'two'"),
    "backend option range": ("[backend.vm]\nmemory_mib=8\n[[experiment]]\nmeasurement='startup'\n"
                             "workloads=['noop']", "backend.vm.memory_mib: must be between 32 and"),
}


def test_good_scenario_expands_the_grid() -> None:
    sc = scenario.parse(__import__("tomllib").loads(GOOD), "good.toml")
    assert [c.id for c in sc.cases[:2]] == ["startup/noop", "startup/idle"]
    quota_cases = [c for c in sc.cases if c.measurement == "cpu_quota"]
    assert len(quota_cases) == 8
    c = quota_cases[0]
    assert c.limits.cpu_quota == 0.5 and c.limits.cpu_period_us == 10_000
    assert c.workload.bound()["threads"] == 1
    assert c.for_backend("container").repetitions == 1
    assert c.for_backend("bare").repetitions == 3
    assert c.skipped_on("vm", "tcg") and not c.skipped_on("vm", "kvm")


def test_plan_interleaves_backends_and_flags_warmups() -> None:
    sc = scenario.parse(__import__("tomllib").loads(GOOD), "good.toml")
    steps = plan(sc.cases[:1], ["bare", "container"], {})
    # each backend once per block (warm-ups just before its first sample), three blocks
    assert sorted((s.backend, s.warmup, s.repetition) for s in steps) == sorted([
        ("bare", True, 0), ("container", True, 0),
        ("bare", False, 0), ("container", False, 0),
        ("bare", False, 1), ("container", False, 1),
        ("bare", False, 2), ("container", False, 2),
    ])


def test_plan_applies_per_accelerator_overrides() -> None:
    sc = scenario.parse(__import__("tomllib").loads(GOOD), "good.toml")
    quota = [c for c in sc.cases if c.measurement == "cpu_quota"]
    assert {s.backend for s in plan(quota, ["bare", "vm"], {"vm": "tcg"})} == {"bare"}
    assert {s.backend for s in plan(quota, ["bare", "vm"], {"vm": "kvm"})} == {"bare", "vm"}


def test_shipped_scenarios_are_valid(tmp_path: Path) -> None:
    from runtimes.image import resolve
    from runtimes.image.model import Image, ImageConfig

    # images.toml names the example images, which a fresh checkout has not made yet (nox -s images):
    # a stand-in with a command is enough to check the scenario itself
    standin = Image("standin", "sha256:" + "0" * 64, "sha256:" + "1" * 64, (tmp_path,), ("sha256:" + "2" * 64,),
                    ImageConfig(cmd=("/bin/true",)))
    undo = resolve.use(lambda ref: standin)
    try:
        for path in sorted(Path("scenarios").glob("*.toml")):
            assert scenario.load(path).cases, path
    finally:
        undo()


def _write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_scenario_is_one_line_exit_2_nothing_created(name: str, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    text, expected = BAD[name]
    path = _write(tmp_path / "bad.toml", text)
    results = tmp_path / "results"
    rc = cli.main(["run", str(path), "--results", str(results)])
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err  # one line, no traceback
    assert str(path) in lines[0] and expected in lines[0], lines[0]
    assert not results.exists()  # nothing created


def test_bad_scenario_through_the_real_command(tmp_path: Path) -> None:
    """The same contract end to end, in a fresh interpreter: exit status 2 and one line."""
    text, expected = BAD["not utf-8"]
    path = _write(tmp_path / "bad.toml", text)
    proc = subprocess.run([sys.executable, "-m", "harness", "run", str(path), "--results", str(tmp_path / "r")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and expected in proc.stderr
    assert not (tmp_path / "r").exists()


def test_unknown_backend_on_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "ok.toml"
    path.write_text("[[experiment]]\nmeasurement='startup'\nworkloads=['noop']\n")
    rc = cli.main(["run", str(path), "--backends", "bare,xen", "--results", str(tmp_path / "r")])
    assert rc == 2
    from runtimes import names

    assert capsys.readouterr().err.strip().splitlines() == [
        f"isobench: error: --backends: unknown backend 'xen' (known: {', '.join(names())})"]
    assert not (tmp_path / "r").exists()


def test_backend_options_reach_the_launch_spec_typed() -> None:
    """Declared options fill their LaunchSpec fields; a backend without options gets the defaults."""
    from harness.measure.context import Context
    from runtimes import declaration
    from runtimes.workloads import Workload

    class Named:
        def __init__(self, name: str):
            self.name = name

    ctx = Context(run_id="u", log_dir=Path("/nonexistent"), backend_options={"vm": {"vcpus": 2}})
    spec = ctx.spec(Named("vm"), Workload("noop"))  # type: ignore[arg-type]
    assert (spec.vcpus, spec.guest_memory_mib) == (2, declaration("vm").option("memory_mib").default)
    assert dict(spec.extra) == {"image_root": "erofs"}  # an option without a LaunchSpec field: in extra
    assert ctx.spec(Named("bare"), Workload("noop")).vcpus == 1  # type: ignore[arg-type]


def test_cpu_cells_carry_weight_and_burst_as_limits() -> None:
    text = ("[scenario]\nbackends=['bare']\n[[experiment]]\nmeasurement='cpu_quota'\n"
            "grid = { quota = [0.5], threads = [2], period_ms = [100], weight = [10000], burst_ms = [50] }\n")
    (c,) = scenario.parse(__import__("tomllib").loads(text), "w.toml").cases
    assert c.limits.cpu_weight == 10_000 and c.limits.cpu_burst_us == 50_000
    assert c.params["weight"] == 10_000  # visible in every row of the cell
