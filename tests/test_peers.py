"""The optional peers (bwrap, oci:runsc) as plain logic: declarations, labels, runsc's command
line and platform verdict, and a run that skips a peer it cannot start (no root needed)."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

import runtimes
from harness import runner, scenario, summary
from harness.errors import UserError
from harness.report import model
from harness.stats import series
from runtimes.bare import BareBackend
from runtimes.declaration import Declaration
from runtimes.oci import runsc
from runtimes.vm.accel import Verdict
from runtimes.workloads import BUSYBOX, Workload

PEERS = ("bwrap", "oci:runsc")


@pytest.mark.parametrize("name", PEERS)
def test_the_new_peers_are_optional_peers_of_the_container(name: str) -> None:
    d = runtimes.declaration(name)
    assert d.optional and d.peer_of == "container" and d.doctor
    order = runtimes.names()
    # the registry's order is the report's: bwrap before the container, runsc after the OCI pair
    assert order.index("unshare") < order.index("bwrap") < order.index("container")
    assert order.index("oci:crun") < order.index("oci:runsc")


def test_runsc_says_the_host_cgroup_around_its_sandbox_enforces_every_limit() -> None:
    d = runtimes.declaration("oci:runsc")
    for kind in ("cpu", "memory", "pids"):
        note = d.enforcement_note(kind)
        assert note is not None and "host cgroup around the gVisor sandbox" in note
    assert "threads" in (d.enforcement_note("pids") or "")
    assert {o.name for o in d.options} == {"seccomp", "platform"}
    assert d.check_options({})["platform"] == "auto"


def test_every_figure_of_runsc_names_its_platform_as_tcg_rows_say_emulated() -> None:
    assert series.label("oci:runsc", "ptrace") == "oci:runsc (gVisor ptrace platform)"
    assert series.label("oci:runsc", "kvm", "host-b") == "oci:runsc (gVisor KVM platform) @ host-b"
    assert series.label("vm", "tcg") == "vm (TCG, emulated)" and series.label("vm", "kvm") == "vm"
    assert series.label("oci:runc", None) == "oci:runc" and series.label("gone", "ptrace") == "gone"
    assert summary.backend_label("oci:runsc", "ptrace") == "oci:runsc (gVisor ptrace platform)"
    assert summary.backend_label("vm", "kvm") == "vm (kvm)"  # unchanged for guests
    assert model.accel_words({"oci:runsc": {"ptrace"}, "vm": {"tcg"}}) == \
        "oci:runsc: gVisor ptrace platform, vm: emulated (TCG)"


def test_a_scenario_may_override_per_runsc_platform_and_rejects_unknown_ones() -> None:
    text = """
[scenario]
name = "p"
backends = ["oci:runsc"]
[[experiment]]
measurement = "startup"
workloads = ["noop"]
overrides = { "oci:runsc@ptrace" = { repetitions = 2 } }
"""
    sc = scenario.parse(tomllib.loads(text), "p.toml", text)
    assert sc.cases[0].for_backend("oci:runsc", "ptrace").repetitions == 2
    bad = text.replace("oci:runsc@ptrace", "oci:runsc@warp")
    with pytest.raises(scenario.ScenarioError, match="unknown accelerator 'warp' .*ptrace"):
        scenario.parse(tomllib.loads(bad), "p.toml", bad)


# -- runsc's command line ----------------------------------------------------------------


def test_runsc_command_line_has_its_platform_network_and_the_bundles_seccomp(tmp_path: Path) -> None:
    cli = runsc.Runsc("/usr/bin/runsc", tmp_path, "ptrace", oci_seccomp=True)
    argv = cli.run(tmp_path / "b", "isobench-x-0")
    assert argv[:3] == ["/usr/bin/runsc", "--root", str(tmp_path)]
    flags = argv[3:argv.index("run")]
    assert flags == ["--platform=ptrace", "--network=none", "--oci-seccomp"]  # global flags first
    assert argv[argv.index("run"):] == ["run", "--pid-file", str(tmp_path / "b" / runsc.PID_FILE),
                                        "--bundle", str(tmp_path / "b"), "isobench-x-0"]
    unconfined = runsc.Runsc("/usr/bin/runsc", tmp_path, "kvm", oci_seccomp=False)
    assert "--oci-seccomp" not in unconfined.delete("isobench-x-0") and "--platform=kvm" in unconfined.delete("n")
    assert cli.marker_fd == 1 and cli.platform == "ptrace"


def test_runsc_gives_the_workload_fd_3_from_its_stdout() -> None:
    cli = runsc.Runsc("runsc", Path("/nonexistent"))
    wl = Workload("noop").argv()
    folded = cli.argv(wl)
    assert folded[:3] == wl[:3] and folded[3] == f"{runsc.REDIRECT}; {wl[3]}"  # no extra process
    assert cli.argv(["/bin/true", "x"]) == [BUSYBOX, "sh", "-c", f'{runsc.REDIRECT}; exec "$@"', "sh", "/bin/true", "x"]
    assert runsc.REDIRECT == "exec 3>&1 1>&2"


def test_runsc_state_files_name_their_container(tmp_path: Path) -> None:
    for f in ("isobench-a-1_sandbox:isobench-a-1.state", "isobench-a-1_sandbox:isobench-a-1.lock",
              "isobench-b-2_sandbox:isobench-b-2.lock", "stray", "x_sandbox:y.tmp"):
        (tmp_path / f).touch()
    cli = runsc.Runsc("runsc", tmp_path)
    assert cli.names() == {"isobench-a-1", "isobench-b-2"}
    assert sorted(p.name for p in cli.state("isobench-a-1")) == [
        "isobench-a-1_sandbox:isobench-a-1.lock", "isobench-a-1_sandbox:isobench-a-1.state"]
    assert runsc.container_of("nope") is None and runsc.Runsc("runsc", tmp_path / "gone").names() == set()
    (tmp_path / "b").mkdir()
    assert cli.sandbox_pid(tmp_path / "b") is None
    (tmp_path / "b" / runsc.PID_FILE).write_text("4242\n")
    assert cli.sandbox_pid(tmp_path / "b") == 4242


def test_the_platform_is_asked_for_or_probed_once_and_cached(tmp_path: Path) -> None:
    calls: list[float] = []

    def hangs(timeout: float) -> str:
        calls.append(timeout)
        return "no ready marker within 5 s"

    assert runsc.platform("ptrace", "v1", hangs, tmp_path).accel == "ptrace" and calls == []
    no_kvm = runsc.platform("auto", "v1", hangs, tmp_path, kvm_device=str(tmp_path / "no-kvm"))
    assert no_kvm.accel == "ptrace" and "KVM unavailable" in no_kvm.reason and calls == []
    kvm = tmp_path / "kvm"
    kvm.touch()  # opens read-write: "a device is there", so the probe decides
    cache = tmp_path / "cache"  # made when the first verdict is stored
    first = runsc.platform("auto", "v1", hangs, cache, kvm_device=str(kvm))
    assert first == Verdict("ptrace", first.reason) and "did not start (no ready marker" in first.reason
    again = runsc.platform("auto", "v1", hangs, cache, kvm_device=str(kvm))
    assert again.accel == "ptrace" and again.cached and calls == [runsc.PROBE_TIMEOUT_S]
    works = runsc.platform("auto", "v2", lambda t: None, cache, kvm_device=str(kvm))  # a new version: probed
    assert works.accel == "kvm" and not works.cached
    with pytest.raises(ValueError, match="unknown runsc platform 'warp'"):
        runsc.platform("warp", "v1", hangs, tmp_path)


# -- a run without a peer it cannot start --------------------------------------------------


class _Missing(BareBackend):
    def available(self) -> str | None:
        return "not installed here (fix: apt-get install nothing)"


SCENARIO = """
[scenario]
name = "skip"
backends = ["bare", "missing"]
repetitions = 2
warmups = 0
[[experiment]]
measurement = "startup"
workloads = ["noop"]
"""


@pytest.mark.parametrize("optional", [True, False])
def test_a_peer_that_cannot_run_is_skipped_with_its_reason(optional: bool, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    unregister = runtimes.register(Declaration(name="missing", factory=_Missing, label="a peer not here",
                                               colour="#010203", optional=optional))
    try:
        sc = scenario.parse(tomllib.loads(SCENARIO), "skip.toml", SCENARIO)
        if not optional:  # as before: only --skip-unavailable lets a run go on without a backend
            with pytest.raises(UserError, match="missing: not installed here"):
                runner.run(sc, tmp_path / "results", progress=False)
            return
        run = runner.run(sc, tmp_path / "results", progress=False)
    finally:
        unregister()
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "completed" and list(manifest["backends"]) == ["bare"]
    assert manifest["skipped_backends"] == {"missing": "not installed here (fix: apt-get install nothing)"}
    assert "isobench: skipping missing: not installed here" in capsys.readouterr().err


# -- the gate on runsc -----------------------------------------------------------------------

AROUND = runtimes.declaration("oci:runsc").enforcement["pids"]


def _pids_case(count: int, reached: float, peak: float, refused: float, backend: str = "oci:runsc"):
    from harness.validate import Case

    values = {"pids_reached": [reached] * 3, "pids_peak": [peak] * 3, "pids_refused": [refused] * 3,
              "pids_tried": [float(count)] * 3, "pids_limit": [128.0] * 3}
    return Case(backend, "pids_limit", "pids", {"count": float(count), "limit": 128.0}, values, [],
                (AROUND,) if backend == "oci:runsc" else ())


def test_the_shipped_baseline_judges_runsc_by_what_its_host_cgroup_counts() -> None:
    """The sandbox's own tasks count: 8 forks fit 128 and each got through; 128 forks are refused by
    the host cgroup long before the workload counts 128 (a bare process would reach exactly 128)."""
    from harness.validate import load_baseline, run_checks
    from harness.validate.held import held

    baseline = load_baseline(Path(__file__).parent.parent / "baselines" / "enforcement.toml")
    fits, refused = _pids_case(8, 9, 97, 0), _pids_case(128, 18, 128, 1)
    checks = run_checks(baseline, [fits, refused], ["oci:runsc"])
    mine = [c for c in checks if c.name.startswith("oci:runsc pids_limit")]
    assert mine and all(c.outcome == "pass" for c in mine), [c.message for c in mine if c.outcome != "pass"]
    assert any("pids_reached all == 9" in c.name for c in mine)  # every fork, below the limit
    assert any("pids_peak all <= 128" in c.name for c in mine)
    verdicts = held(checks, [fits, refused, _pids_case(8, 9, 40, 0, backend="container")])
    assert [h.verdict for h in verdicts] == ["held", "held"]  # the container's own cgroup: not listed
    assert verdicts[0].how == AROUND and verdicts[0].line().startswith("HELD       oci:runsc pids_limit/pids count=8")
    # one fork past the limit, as seen from inside the sandbox: not held, and why
    over = _pids_case(128, 129, 128, 1)
    (bad,) = held(run_checks(baseline, [over], ["oci:runsc"]), [over])
    assert bad.verdict == "not held" and "pids_reached worst sample 129 > max 128" in bad.why
    (none,) = held([], [over])
    assert none.verdict == "not judged" and none.why == "no bound of the baseline applies"


# -- where the container sits ------------------------------------------------------------------


def test_the_findings_place_the_container_between_its_peers_with_intervals() -> None:
    import pandas as pd

    from harness.report import placement

    def row(peer: str, ratio: float, lo: float, hi: float, n: int = 30, metric: str = "launch_to_ready"):
        return {"peer": peer, "reference": "container", "metric": metric, "workload": "noop", "ratio": ratio,
                "ci_lo": lo, "ci_hi": hi, "n_peer": n, "n_ref": n}

    peers = pd.DataFrame([row("oci:runsc (gVisor ptrace platform)", 9.8, 9.1, 10.5), row("bwrap", 0.61, 0.55, 0.66),
                          row("oci:crun", 1.02, 0.95, 1.1), row("oci:runc", 1.6, 1.4, 1.8, n=4),
                          row("bwrap", 0.5, 0.4, 0.6, metric="pss")])
    (line,) = placement.lines(peers)  # pss has one peer: nothing to place it between
    assert line == ("container among its peers, launch_to_ready (noop): above bwrap 0.610× [0.550–0.660]; "
                    "below oci:runsc (gVisor ptrace platform) 9.80× [9.10–10.5]; "
                    "not resolved from oci:crun 1.02× [0.950–1.10], oci:runc ≈1.60×")
    assert placement.lines(peers.iloc[0:0]) == []


def test_peers_scenario_runs_the_seven_in_one_interleaved_run() -> None:
    path = Path(__file__).parent.parent / "scenarios" / "peers.toml"
    sc = scenario.parse(tomllib.loads(path.read_text()), str(path), path.read_text())
    assert sc.backends[:7] == ["bare", "unshare", "bwrap", "container", "oci:crun", "oci:runc", "oci:runsc"]
    startup, memory = sc.cases[0], sc.cases[-1]
    assert startup.backends is None  # every backend, interleaved
    assert memory.backends is not None and not {"unshare", "bwrap"} & set(memory.backends)
