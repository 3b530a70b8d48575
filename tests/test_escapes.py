"""Issue 28: what a workload can reach on the host, and what `isobench cleanup` may touch.

Each escape is tried as a user would meet it, through the command line
(``isobench exec``, ``isobench run``, ``isobench cleanup``): the workload
rewrites and chmods whatever is behind its fds and its /dev, and the host's
files must not change.  Nothing here changes a host file even if the fix
regressed: the chmods set the mode the file already has (0666 on /dev/null),
and the files given to the workload are this test's own.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness import cleanup as harness_cleanup
from harness import results
from runtimes import owners
from runtimes import syscalls as sc
from runtimes.base import PREFIX, LaunchSpec
from runtimes.container import leftovers
from runtimes.container.backend import ContainerBackend
from runtimes.marker import MAX_RESULTS
from runtimes.naming import BadName
from runtimes.workloads import BUSYBOX, Workload
from tests.conftest import require

REPO = Path(__file__).resolve().parent.parent
ISOBENCH = [sys.executable, "-m", "harness"]
#: the container variants (their own /dev), then the backends whose workload sees the host's /dev
CONTAINERS = ("container", "container:cold", "container:fork", "container:python", "container:unconfined",
              "oci:runc", "oci:crun")
HOST_DEV = ("bare", "unshare")

#: the reproduction of issue 28, and a report on stderr of what each fd and /dev/null is
ATTACK = """
cat /bin/busybox >/proc/self/fd/1
chmod 4755 /proc/self/fd/1 /proc/self/fd/2; : >/proc/self/fd/2
for n in 0 1 2; do echo "fd$n=$(stat -L -c '%F %d:%i' /proc/self/fd/$n)" >&2; done
if [ "$1" = own-dev ]; then
  chmod 666 /proc/self/fd/0; echo "stdin_chmod=$?" >&2
  chmod 666 /dev/null; echo "null_chmod=$?" >&2
  echo "null=$(stat -c '%d:%i %t:%T' /dev/null)" >&2
  chmod 444 /proc/kcore; echo "mask_chmod=$?" >&2
fi
"""


def _host_null() -> str:
    st = os.stat("/dev/null")
    return f"{st.st_dev}:{st.st_ino}"


def _report(err: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in err.splitlines() if "=" in line and " " not in line.split("=")[0])


def _attack(tmp_path: Path, argv: list[str]) -> tuple[subprocess.CompletedProcess[bytes], dict[str, str], Path]:
    out, err = tmp_path / "OUT", tmp_path / "ERR"
    with open(out, "wb") as o, open(err, "wb") as e:
        os.fchmod(o.fileno(), 0o600)
        os.fchmod(e.fileno(), 0o600)
        proc = subprocess.run(argv, stdout=o, stderr=e, cwd=REPO, timeout=120)
    text = err.read_text(errors="replace")
    if "unavailable" in text:
        require(False, text.strip()[-300:])
    for f in (out, err):  # the files behind the workload's stdout and stderr: as they were made
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f"{f.name} was chmodded: {oct(f.stat().st_mode)}"
    return proc, _report(text), out


def _check_own_dev(rep: dict[str, str]) -> None:
    """stdin, /dev/null and the masks are the container's own nodes, in a read-only /dev."""
    assert rep["fd0"].startswith("character special file") and not rep["fd0"].endswith(_host_null()), rep
    assert rep["stdin_chmod"] != "0" and rep["null_chmod"] != "0" and rep["mask_chmod"] != "0", rep
    node, numbers = rep["null"].split()
    assert node != _host_null() and numbers == "1:3", rep  # made with mknod: the same device, another inode


@pytest.mark.privileged
@pytest.mark.parametrize("name", CONTAINERS + HOST_DEV)
def test_no_host_file_is_behind_a_workload_s_fds_or_dev(name: str, tmp_path: Path) -> None:
    own_dev = name not in HOST_DEV
    proc, rep, out = _attack(tmp_path, [*ISOBENCH, "exec", "--backend", name, "--", BUSYBOX, "sh", "-c", ATTACK,
                                        "attack", "own-dev" if own_dev else "host-dev"])
    assert proc.returncode == 0, rep
    assert out.read_bytes() == Path(BUSYBOX).read_bytes()  # the output still arrives, through the harness
    assert rep["fd1"].startswith("fifo") and rep["fd2"].startswith("fifo"), rep  # pipes the harness owns
    if own_dev and not name.startswith("oci:"):
        _check_own_dev(rep)
    else:  # an OCI runtime, bare and unshare hand on what they were given: an empty pipe
        assert rep["fd0"].startswith("fifo"), rep
        if own_dev:  # runc/crun make /dev/null with mknod too (in a /dev they leave writable)
            assert rep["null"].split()[0] != _host_null(), rep


@pytest.mark.privileged
def test_the_debug_runner_s_writable_root_makes_its_own_devices_too(tmp_path: Path) -> None:
    """``python -m runtimes.container run --rw``: an overlay root, the plan run whole (no prepared root)."""
    proc, rep, _ = _attack(tmp_path, [sys.executable, "-m", "runtimes.container", "run", "--rw", "--", BUSYBOX,
                                      "sh", "-c", ATTACK, "attack", "own-dev"])
    assert proc.returncode == 0, rep
    _check_own_dev(rep)


@pytest.mark.privileged
def test_a_workload_may_report_only_so_many_result_keys(run_id: str, tmp_path: Path) -> None:
    b = ContainerBackend()
    require((why := b.available()) is None, f"container backend unavailable: {why}")
    script = ("i=0; while [ $i -lt 3000 ]; do echo \"ISOBENCH RESULT k$i=$i\"; i=$((i+1)); done >&3; "
              "echo 'ISOBENCH RESULT k0=again' >&3; echo done")  # (a log only when something is written)
    spec = LaunchSpec(Workload("noop"), run_id, f"{PREFIX}-{run_id}-0", timeout_s=30, log_dir=str(tmp_path),
                      extra={"argv": [BUSYBOX, "sh", "-c", script]})
    try:
        with b.launch(spec) as inst:
            assert inst.wait(30) == 0
    finally:
        b.close()
    assert len(inst.results) == MAX_RESULTS and inst.results["k0"] == "again"
    assert inst.marker.dropped_results == 3000 - MAX_RESULTS
    log = Path(inst.log_path or "")
    assert stat.S_IMODE(log.stat().st_mode) == 0o600  # written by root from a workload's output


def test_a_log_is_root_s_alone_and_never_a_symlink_s_target(tmp_path: Path) -> None:
    from runtimes.stdio import Stdio, create_log

    old = tmp_path / "logs" / "old.log"
    old.parent.mkdir(mode=0o755)
    old.write_bytes(b"before")
    old.chmod(0o644)
    create_log(old).close()
    assert stat.S_IMODE(old.stat().st_mode) == 0o600 and old.read_bytes() == b""
    new = tmp_path / "fresh" / "x.log"
    with create_log(new):
        assert stat.S_IMODE(new.parent.stat().st_mode) == 0o700
    (tmp_path / "logs" / "link.log").symlink_to(tmp_path / "victim")
    with pytest.raises(OSError):
        Stdio.to_log(tmp_path / "logs" / "link.log")
    assert not (tmp_path / "victim").exists()


# -- isobench cleanup ---------------------------------------------------------------------------
def _mount(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    sc.mount(str(src), str(dst), None, sc.MS_BIND)


def _mounted(point: Path) -> bool:
    """(os.path.ismount misses a bind mount within one filesystem)"""
    return str(point) in leftovers.mount_points(Path("/proc/self/mountinfo").read_bytes())


def _cleanup(run_id: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ISOBENCH, "cleanup", "--run-id", run_id], capture_output=True, text=True,
                          cwd=REPO, timeout=120)


@pytest.mark.privileged
def test_cleanup_leaves_a_live_container_and_foreign_mounts_alone(run_id: str, tmp_path: Path,
                                                                   no_leftovers) -> None:
    b = ContainerBackend()
    require((why := b.available()) is None, f"container backend unavailable: {why}")
    src = tmp_path / "src"
    src.mkdir()
    # a checkout named isobench, and one named like this run's objects, with escapes in the path
    foreign = [tmp_path / "isobench", tmp_path / "my\tisobench\\dir" / f"{PREFIX}-{run_id}-0"]
    for f in foreign:
        _mount(src, f)
    spec = LaunchSpec(Workload("idle"), run_id, f"{PREFIX}-{run_id}-0", timeout_s=30, log_dir=str(tmp_path))
    try:
        with b.launch(spec) as inst:
            inst.wait_ready(20)
            assert inst.cgroup is not None
            owned = [*inst.cgroup.unique_dirs(), *([inst.devices.path] if inst.devices is not None else [])]
            # what the sweeps would act on, for every run: nothing of this one
            assert inst.proc.pid not in [pid for pid, _ in leftovers.container_inits()]
            assert not set(owned) & set(harness_cleanup.leftover_cgroups())
            assert not {str(f) for f in foreign} & set(leftovers.host_mounts())
            done = _cleanup(run_id)
            assert done.returncode == 0, done.stderr
            assert f"run {run_id} is live (harness pid {os.getpid()})" in done.stdout
            assert "removed 0 item(s)" in done.stdout, done.stdout
            assert inst.proc.poll() is None and all(d.is_dir() for d in owned)
            inst.stop()
            assert inst.wait(10) < 0
    finally:
        b.close()
        survived = [f for f in foreign if _mounted(f)]
        for f in survived:
            sc.umount2(str(f), sc.MNT_DETACH)
    assert survived == foreign, "a foreign mount was unmounted"


@pytest.mark.privileged
def test_cleanup_removes_a_dead_run_s_mount_at_its_own_mount_point(run_id: str, tmp_path: Path) -> None:
    """The positive case: a mount below isobench's own state directory, of a run nobody owns, with a
    tab and a backslash on its way (mountinfo writes them as \\011 and \\134)."""
    dead = f"{run_id}dead"
    top = leftovers.MOUNT_ROOTS[0] / f"t{os.getpid()}\tx\\y"
    point = top / f"{PREFIX}-{dead}-0"
    _mount(tmp_path, point)
    try:
        assert str(point) in leftovers.host_mounts(dead)
        done = _cleanup(dead)
        assert done.returncode == 0 and f"removed mount {point}" in done.stdout, done
        assert not _mounted(point)
    finally:
        if _mounted(point):
            sc.umount2(str(point), sc.MNT_DETACH)
        point.rmdir()
        top.rmdir()


SCENARIO = """
[scenario]
backends = ["container"]
repetitions = 150
warmups = 0
[[experiment]]
measurement = "startup"
workloads = ["noop"]
"""


@pytest.mark.privileged
@pytest.mark.slow
def test_cleanup_during_a_run_leaves_it_complete_and_its_logs_private(run_id: str, tmp_path: Path) -> None:
    scen = tmp_path / "s.toml"
    scen.write_text(SCENARIO)
    proc = subprocess.Popen([*ISOBENCH, "run", str(scen), "--results", str(tmp_path), "--run-id", run_id,
                             "--no-progress"], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    samples = tmp_path / run_id / results.SAMPLES
    during = 0
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (samples.exists() and samples.read_text().count("\n") >= 5):
            time.sleep(0.05)
        while proc.poll() is None:
            done = _cleanup(run_id)
            assert done.returncode == 0, done.stderr
            during += proc.poll() is None  # the run was still going when this cleanup had finished
        assert proc.wait(120) == 0, proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert during >= 1, "the run ended before a cleanup had run beside it (make it longer)"
    manifest = results.read_manifest(tmp_path / run_id)
    assert manifest["status"] == "completed" and manifest["samples"].get("failed", 0) == 0, manifest["samples"]
    rows = [json.loads(line) for line in samples.read_text().splitlines()]
    assert {r["status"] for r in rows} == {"ok"}
    logs = tmp_path / run_id / "logs"
    assert stat.S_IMODE(logs.stat().st_mode) == 0o700
    assert [p for p in logs.iterdir() if stat.S_IMODE(p.stat().st_mode) != 0o600] == []


# -- names, numbers, profiles, the compiler -------------------------------------------------------
@pytest.mark.parametrize("bad", ["/abs/path", "../up", "a/b", "..", ".hidden", "", "x" * 65, "sp ace"])
def test_a_run_id_is_a_name_never_a_path(bad: str, tmp_path: Path) -> None:
    with pytest.raises(BadName, match="is not a name"):
        LaunchSpec(Workload("noop"), bad, f"{PREFIX}-x-0")
    with pytest.raises(BadName, match="is not a name"):
        results.RunWriter(tmp_path, {}, bad)
    assert list(tmp_path.iterdir()) == []



@pytest.mark.parametrize("bad", ["plain-name", f"{PREFIX}-../../x", f"{PREFIX}-a/b-0", f"{PREFIX}-", "isobench x"])
def test_an_instance_name_is_a_name_too(bad: str) -> None:
    """It names cgroups, bundles and guests: ``Cgroup.create`` checks the same way."""
    from runtimes.cgroups import Cgroup, CgroupError

    with pytest.raises(BadName, match="must contain 'isobench' as its prefix"):
        LaunchSpec(Workload("noop"), "x", bad)
    with pytest.raises(CgroupError, match="must contain 'isobench' as its prefix"):
        Cgroup.create(bad)


def test_run_and_cleanup_refuse_a_path_as_run_id_in_one_line(tmp_path: Path) -> None:
    scen = tmp_path / "s.toml"
    scen.write_text(SCENARIO)
    for argv in (["run", str(scen), "--results", str(tmp_path / "r"), "--run-id", str(tmp_path / "abs")],
                 ["cleanup", "--run-id", "../etc"]):
        r = subprocess.run([*ISOBENCH, *argv], capture_output=True, text=True, cwd=REPO, timeout=60)
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and "is not a name" in r.stderr, r.stderr
    assert not (tmp_path / "abs").exists() and not (tmp_path / "r").exists()


@pytest.mark.parametrize("opts", [["--cpus", "nan"], ["--cpus", "inf"], ["--period-ms", "nan"], ["--timeout", "nan"],
                                  ["--timeout", "-1"], ["--timeout", "inf"], ["--memory", "-5"], ["--pids", "0"]])
def test_exec_numbers_must_be_finite_and_in_range(opts: list[str]) -> None:
    r = subprocess.run([*ISOBENCH, "exec", *opts, "--", "true"], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and opts[0] in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize(("key", "value"), [("params.seconds", "inf"), ("seconds", "nan"), ("timeout", "inf"),
                                            ("settle", "nan")])
def test_scenario_numbers_must_be_finite(key: str, value: str) -> None:
    from harness.scenario import ScenarioError, parse

    exp = {"measurement": "cpu_quota", "grid": {"quota": [0.5], "threads": [1]}}
    if key.startswith("params."):
        exp["params"] = {key.split(".")[1]: float(value)}
    else:
        exp[key] = float(value)
    with pytest.raises(ScenarioError, match="finite"):
        parse({"scenario": {"backends": ["bare"]}, "experiment": [exp]})


def test_backend_options_must_be_finite() -> None:
    from runtimes.declaration import Option, OptionError

    for v in (float("nan"), float("inf")):
        with pytest.raises(OptionError, match="finite"):
            Option("x", float, 1.0).check(v)


def _profile(tmp_path: Path, rule: object, **top: object) -> str:
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [rule], **top}))
    return str(path)


@pytest.mark.parametrize(("rule", "top", "message"), [
    ({"names": "mkdir", "action": "SCMP_ACT_ERRNO"}, {},
     r"syscalls\[0\]\.names: must be a list of strings, got the string 'mkdir'"),
    ({"names": ["mkdir"]}, {}, r"syscalls\[0\] \(mkdir\): no 'action'"),
    ({"names": ["mkdir"], "action": "SCMP_ACT_DENY"}, {}, r"syscalls\[0\] \(mkdir\)\.action: unknown action"),
    ({"action": "SCMP_ACT_ERRNO"}, {}, r"syscalls\[0\]: no 'names'"),
    ({"names": [], "action": "SCMP_ACT_ERRNO"}, {}, r"an empty list"),
    ({"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 9, "value": 0, "op": "SCMP_CMP_EQ"}]}, {},
     r"args\[0\]\.index: must be a whole number 0\.\.5, got 9"),
    ({"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 0, "op": "EQ"}]}, {},
     r"unknown comparison 'EQ'"),
    ({"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": "1"}, {}, r"errnoRet: must be a whole number"),
    ({"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "includes": {"caps": "CAP_X"}}, {}, r"includes\.caps"),
    ({"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}, {"architectures": "SCMP_ARCH_X86_64"}, r"architectures"),
    ({"names": ["no_such_call", "nor_this"], "action": "SCMP_ACT_ERRNO"}, {},
     r"no_such_call, nor_this: no syscall of that name is known here"),
])
def test_a_malformed_seccomp_profile_is_one_line_naming_the_rule(tmp_path: Path, rule: object, top: dict,
                                                                 message: str) -> None:
    from runtimes.container.security import seccomp

    with pytest.raises(seccomp.SeccompError, match=message) as e:
        seccomp.prepare(_profile(tmp_path, rule, **top), ())
    assert "\n" not in str(e.value)


def test_shipped_and_engine_profiles_validate_and_unknown_names_beside_known_ones_are_skipped(tmp_path: Path) -> None:
    from runtimes.container.security import seccomp

    assert seccomp.prepare(seccomp.DEFAULT, ()) is not None
    if os.path.exists("/usr/share/containers/seccomp.json"):  # podman's (containers-common)
        assert seccomp.prepare("/usr/share/containers/seccomp.json", ()) is not None
    # a newer kernel's syscall beside a known one: skipped, as runc does; the rule stays
    assert seccomp.prepare(_profile(tmp_path, {"names": ["mkdir", "no_such_call"], "action": "SCMP_ACT_ERRNO"}),
                           ()) is not None


def test_the_zygote_compiler_is_an_absolute_root_owned_system_path(tmp_path: Path, monkeypatch) -> None:
    from runtimes import trust
    from runtimes.container.launcher import native

    monkeypatch.delenv("CC", raising=False)
    cc = native.compiler()
    assert os.path.isabs(cc) and trust.untrusted(cc) is None
    monkeypatch.setenv("CC", "gcc")
    with pytest.raises(native.NativeUnavailable, match="not an absolute path"):
        native.compiler()
    fake = tmp_path / "cc"
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    os.chown(fake, 1000, 1000)
    monkeypatch.setenv("CC", str(fake))
    with pytest.raises(native.NativeUnavailable, match="is refused: .* not root's alone"):
        native.compiler()
    assert native.BUILD_ENV["PATH"] == "/usr/bin:/bin"


def test_mountinfo_escapes_are_decoded_and_only_isobench_s_own_points_are_its() -> None:
    line = rb"36 35 98:0 / /run/isobench/a\040b\011c\134d\012e/isobench-r1-0 rw - tmpfs t rw"
    assert leftovers.mount_points(line) == ["/run/isobench/a b\tc\\d\ne/isobench-r1-0"]
    assert leftovers.ours("/run/isobench/x/isobench-r1-0", "r1", owners.Live())
    assert not leftovers.ours("/run/isobench/x/isobench-r1-0", "r12", owners.Live())  # a prefix, not a substring
    assert not leftovers.ours("/srv/isobench", None, owners.Live())  # a checkout named isobench
    assert not leftovers.ours("/home/u/isobench-r1-0", None, owners.Live())  # the right name, not our place
    assert not leftovers.ours("/run/isobench-oci", None, owners.Live())  # the state directory itself
    assert leftovers.ours(f"{leftovers.MOUNT_ROOTS[-1]}/run/isobench-r1-0/root", "r1", owners.Live())  # in the cache
    live = owners.Live({"r1": (owners.me(),)})
    assert not leftovers.ours("/run/isobench/x/isobench-r1-0", "r1", live)


def test_an_owner_is_its_pid_and_its_start_time(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(owners, "OWNERS", tmp_path)
    me = owners.me()
    assert me.alive() and owners.Owner.parse(me.tag()) == me
    assert not owners.Owner(me.pid, str(int(me.start) + 1)).alive()  # the pid, reused by another process
    owners.claim("live-run")
    (tmp_path / "dead-run").mkdir()
    (tmp_path / "dead-run" / owners.Owner(me.pid, "1").tag()).touch()
    live = owners.live()
    assert set(live.runs) == {"live-run"} and live.owns(f"{PREFIX}-live-run-3") and not live.owns(f"{PREFIX}-dead-run-3")
    assert live.owns(f"{PREFIX}-devices-{me.tag()}-container-1f")  # named after a live process
    owners.live(prune=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["live-run"]
    owners.release("live-run")
    assert owners.live().runs == {}
