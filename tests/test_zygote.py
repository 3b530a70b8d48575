"""The container's launchers: the zygote (default), the fork of the harness, clone3.

The isolation and enforcement tests in ``test_container.py`` run on the zygote
(the default launcher) and its default kind, the native one (``launcher/zygote.c``);
these check the zygote itself: who is whose parent, its lifetime (close, crash,
SIGKILL of the harness), the cold variant, that the native zygote, the Python
zygote and the fork launcher run the same child-side setup, the native child's
error reports, and the fallback to the Python zygote where the C one cannot be built.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtimes import cgroups
from runtimes import syscalls as sc
from runtimes.base import BackendError, LaunchSpec, Limits
from runtimes.container import cleanup_leftovers
from runtimes.container.backend import ContainerBackend
from runtimes.container.cold import ColdContainerBackend
from runtimes.container.launcher.zygote_server import ZYGOTE_COMM
from runtimes.container.leftovers import orphaned_zygotes
from runtimes.workloads import BUSYBOX, Workload
from tests.conftest import is_root, require
from tests.test_container import PRELUDE

REPO = Path(__file__).resolve().parent.parent
IDLE = Workload("idle", {"seconds": 30})


def _status(pid: int) -> dict[str, str]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        k, _, v = line.partition(":")
        out[k] = v.strip()
    return out


def _gone(pid: int, timeout: float = 5.0) -> bool:
    """Exited (or a zombie nobody will reap: it holds nothing)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return True
        except OSError:
            return True
        time.sleep(0.01)
    return False


def _spec(run_id: str, n: int = 0, workload: Workload = IDLE, **extra) -> LaunchSpec:
    return LaunchSpec(workload, run_id, f"isobench-{run_id}-{n}", Limits(pids=16), timeout_s=30, extra=extra)


@pytest.fixture
def backend(clean) -> Iterator[ContainerBackend]:
    b = ContainerBackend()
    reason = b.available()
    require(reason is None, f"container backend unavailable: {reason}")
    yield b
    zpid = b.zygote.pid
    b.close()
    assert zpid is None or _gone(zpid, 0.1), "close() left the zygote running"


@pytest.fixture
def clean(run_id: str) -> Iterator[None]:
    """Nothing of this test's instances is left: cgroups, mounts, inits, zygotes.  (Filtered by
    run id: other people's runs on a shared machine come and go meanwhile.)"""
    from tests.conftest import isobench_cgroups, isobench_mounts
    from tests.test_container import _runtime_state

    zygotes_before = set(_zygotes())
    yield
    assert [x for x in _runtime_state(run_id) if not x.startswith("mount ") or run_id in x] == []
    assert [d for d in isobench_cgroups() if run_id in d] == []
    assert [m for m in isobench_mounts() if run_id in m] == []
    assert set(_zygotes()) - zygotes_before == set(), "a zygote outlived its backend"


def _zygotes() -> list[int]:
    """Live zygotes that are children of this process."""
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                st = _status(int(pid))
            except OSError:
                continue
            if st.get("Name") == ZYGOTE_COMM and st.get("PPid") == str(os.getpid()) and st["State"][0] != "Z":
                found.append(int(pid))
    return found


# -- clone3 itself ----------------------------------------------------------------------------
@pytest.mark.privileged
def test_clone3_with_clone_parent_makes_a_sibling_that_the_caller_s_parent_reaps() -> None:
    r, w = os.pipe()
    helper = os.fork()
    if helper == 0:  # pragma: no cover - the "zygote": its child becomes ours
        try:
            pid = sc.clone3(sc.CLONE_PARENT | sc.CLONE_NEWPID)
            if pid == 0:
                os._exit(0 if os.getpid() == 1 else 1)
            os.write(w, str(pid).encode())
        finally:
            os._exit(0)
    os.close(w)
    os.waitpid(helper, 0)
    pid = int(os.read(r, 32))
    os.close(r)
    assert os.waitpid(pid, 0) == (pid, 0)  # ours to reap; it was PID 1 of its namespace
    with pytest.raises(OSError, match="clone3"):  # an unknown flag: one readable error
        sc.clone3(1 << 62)


# -- the zygote -------------------------------------------------------------------------------------
@pytest.mark.privileged
@pytest.mark.parametrize("kind", ["native", "python"])
def test_the_zygote_forks_children_of_the_harness_in_their_cgroup(run_id, clean, kind) -> None:
    backend = ContainerBackend(zygote=kind)
    insts = [backend.launch(_spec(run_id, n)) for n in range(2)]
    try:
        for inst in insts:
            inst.wait_ready(10)
        zpid = backend.zygote.pid
        assert zpid is not None and backend.zygote.starts == 1  # one zygote for both
        assert backend.zygote.kind == kind and backend.metadata()["zygote"].startswith(kind)
        exe = os.readlink(f"/proc/{zpid}/exe")
        assert ("isobench-zygote-" in exe) == (kind == "native"), exe
        z = _status(zpid)
        assert z["Name"] == ZYGOTE_COMM and z["PPid"] == str(os.getpid())
        assert os.getpgid(zpid) == zpid != os.getpgid(0)  # a process group of its own
        assert ZYGOTE_COMM in Path(f"/proc/{zpid}/cmdline").read_text()
        for inst in insts:
            pid = inst.proc.pid  # type: ignore[union-attr]
            assert _status(pid)["PPid"] == str(os.getpid())  # CLONE_PARENT: the harness waits for it
            own = Path(f"/proc/{pid}/cgroup").read_text()
            assert inst.cgroup is not None
            for d in inst.cgroup.dirs.values():  # it joined (v1) or was born in (v2) every hierarchy
                assert str(d).endswith(inst.name) and f"/{inst.name}\n" in own
            inst.stop()
            assert inst.wait(10) == -signal.SIGKILL
    finally:
        for inst in insts:
            inst.cleanup()
        backend.close()


@pytest.mark.privileged
def test_a_zygote_crash_fails_that_launch_with_its_reason_and_the_next_launch_restarts_it(backend, run_id) -> None:
    with backend.launch(_spec(run_id, 3, Workload("noop"))) as inst:  # what a launch loads once is loaded
        assert inst.wait(10) == 0
    zpid = backend.zygote.pid
    assert zpid is not None
    os.kill(zpid, signal.SIGSTOP)  # the request is sent, then the zygote dies before answering
    killer = threading.Timer(0.3, os.kill, (zpid, signal.SIGKILL))
    killer.start()
    try:
        with pytest.raises(BackendError, match=rf"{ZYGOTE_COMM}, pid {zpid}\) died while forking.*SIGKILL"):
            backend.launch(_spec(run_id, 0, Workload("noop")))
    finally:
        killer.join()
    assert _gone(zpid)
    with backend.launch(_spec(run_id, 1, Workload("noop"))) as inst:
        assert inst.wait(10) == 0
    assert backend.zygote.pid not in (None, zpid) and backend.zygote.starts == 2, backend.zygote.starts
    # a zygote found dead *before* a launch is restarted before t_launch: that launch succeeds
    os.kill(backend.zygote.pid, signal.SIGKILL)
    assert _gone(backend.zygote.pid)
    with backend.launch(_spec(run_id, 2, Workload("noop"))) as inst:
        assert inst.wait(10) == 0
    assert backend.zygote.starts == 3


@pytest.mark.privileged
def test_close_stops_the_zygote_and_a_later_launch_starts_another(backend, run_id) -> None:
    with backend.launch(_spec(run_id, 0, Workload("noop"))) as inst:
        inst.wait(10)
    first = backend.zygote.pid
    backend.close()
    backend.close()  # idempotent
    assert first is not None and _gone(first, 0.1) and backend.zygote.pid is None
    with backend.launch(_spec(run_id, 1, Workload("noop"))) as inst:
        assert inst.wait(10) == 0
    assert backend.zygote.pid not in (None, first)


@pytest.mark.privileged
def test_both_launchers_run_the_same_child_setup(backend, run_id, tmp_path) -> None:
    """The zygotes' containers (below its prepared root, template.py; set up in C by the native
    one, in Python by the other) and the fork launcher's (the whole mount plan, in Python) look
    the same from inside: mounts and their options, devices, capabilities, namespaces, limits,
    keyring, signal state.  Only how the device nodes got there differs (mknod vs bind)."""
    script = ("res pid $$; res caps $(grep CapEff /proc/self/status | cut -f2); "
              "res bnd $(grep CapBnd /proc/self/status | cut -f2); res nnp $(grep NoNewPrivs /proc/self/status | cut -f2); "
              "res amb $(grep CapAmb /proc/self/status | cut -f2); res sec $(grep -E '^Seccomp:' /proc/self/status | cut -f2); "
              "res sig $(grep -E '^Sig(Blk|Ign)' /proc/self/status | cut -f2 | tr '\\n' ' '); res nofile $(ulimit -n); "
              "res oom $(cat /proc/self/oom_score_adj); res host $(hostname); res cwd $(pwd); "
              "res lo $(cat /sys/class/net/lo/operstate 2>/dev/null || ip -o link show lo 2>/dev/null | grep -c UP); "
              "res fds $(ls /proc/$$/fd | tr '\\n' ' '); res sid $(cut -d' ' -f6 /proc/self/stat); "
              "res cgroup $(cut -d: -f3 /proc/self/cgroup | sort -u); res ns $(ls /proc/1/ns | tr '\\n' ' '); "
              "res devs $(ls -ln /dev | awk '{print $1 $5 $6 $NF}' | tr '\\n' ' '); "
              # mount point and options; the binds that mask /proc files (root /null) and the
              # device binds of the fork launcher carry their source's options: points only
              "res mounts $(awk '$5 ~ /^\\/dev\\/[a-z]+$/ && $5 != \"/dev/shm\" { next } "
              "$4 == \"/null\" { print $5; next } { print $5 \"=\" $6 }' /proc/self/mountinfo | sort | tr '\\n' ' ')")
    seen = {}
    for n, (launcher, kind) in enumerate([("zygote", "native"), ("zygote", "python"), ("fork", None)]):
        spec = LaunchSpec(Workload("noop"), run_id, f"isobench-{run_id}-{n}", timeout_s=30, log_dir=str(tmp_path),
                          extra={"argv": [BUSYBOX, "sh", "-c", PRELUDE + script], "launcher": launcher,
                                 "zygote": kind, "hostname": "same"})
        with backend.launch(spec) as inst:
            assert inst.wait(10) == 0, Path(inst.log_path or "/dev/null").read_text()
        seen[kind or launcher] = dict(inst.results)
    assert seen["native"] == seen["fork"] and seen["python"] == seen["fork"]
    assert backend.ran == {"zygote (native)": 1, "zygote (python)": 1, "fork": 1}
    assert backend.metadata()["launcher"] == "fork, zygote (native), zygote (python)"
    assert backend.metadata()["zygote"] == "native, python (asked for)"  # the zygotes that ran
    mounts = seen["fork"]["mounts"].split()
    assert "/=ro,nosuid,nodev,relatime" in mounts and any(m.startswith("/proc=") for m in mounts), mounts
    assert "crw-rw-rw-1,3null" in seen["fork"]["devs"].split(), seen["fork"]["devs"]
    assert seen["fork"]["pid"] == "1" and seen["fork"]["cgroup"] == "/" and seen["fork"]["nnp"] == "1"
    assert seen["fork"]["sec"] == "2" and seen["fork"]["nofile"] == "1024" and seen["fork"]["oom"] == "0"
    # fd 4: the shell's end of the $(...) pipe; the status pipe (4) and mount ns (5) closed at exec
    assert seen["fork"]["fds"] == "0 1 2 3 4" and seen["fork"]["sid"] == "1" and seen["fork"]["lo"] == "1" and seen["fork"]["amb"] == "0000000000000000"
    with pytest.raises(BackendError, match="launcher must be one of"):
        backend.launch(_spec(run_id, 9, launcher="vfork"))


@pytest.mark.privileged
def test_the_cold_variant_starts_its_zygote_inside_every_launch(run_id, clean) -> None:
    b = ColdContainerBackend()
    try:
        for n in range(2):
            with b.launch(_spec(run_id, n, Workload("noop"))) as inst:
                inst.wait_ready(10)
                assert inst.wait(10) == 0
            t = inst.times
            assert list(t.phases)[0] == "helper_start" and t.phases["helper_start"] > 0
            assert sum(t.phases.values()) == t.t_ready - t.t_launch  # type: ignore[operator]
        assert b.zygote.starts == 2
        assert "cold" in b.metadata()["helper"]
    finally:
        b.close()


# -- the native zygote's child reports failures as init.py's does; the fallback ----------------------
@pytest.mark.privileged
@pytest.mark.parametrize("kind", ["native", "python"])
def test_a_failing_child_reports_the_step_and_the_reason(run_id, clean, kind, tmp_path) -> None:
    """A missing executable, and a root without /proc: the E line names what failed."""
    b = ContainerBackend(zygote=kind)
    try:
        with pytest.raises(BackendError, match="cannot execute /nonexistent/tool in the container: No such file"):
            b.launch(_spec(run_id, 0, Workload("noop"), argv=["/nonexistent/tool"]))
        with pytest.raises(BackendError, match="/no/such/dir.*No such file or directory"):
            b.launch(_spec(run_id, 2, Workload("noop"), cwd="/no/such/dir"))
        assert b.zygote.kind == kind
    finally:
        b.close()
    root = tmp_path / "root"  # the shared root builds (dev, tmp), the container's /proc mount fails
    for d in ("dev", "tmp"):
        (root / d).mkdir(parents=True)
    b = ContainerBackend(rootfs_dir=str(root), zygote=kind)
    try:
        with pytest.raises(BackendError, match=r"mount plan step 'proc -> /proc' failed: .*No such file or directory"):
            b.launch(_spec(run_id, 1, Workload("noop"), argv=["/bin/true"]))
    finally:
        b.close()


@pytest.mark.privileged
def test_without_a_working_compiler_the_python_zygote_runs_and_the_metadata_says_why(run_id, clean,
                                                                                    monkeypatch) -> None:
    from runtimes.container import checks

    monkeypatch.setenv("CC", "/bin/false")  # a "compiler" that fails: a build key of its own, never cached
    line = next(c for c in checks.checks(probe=True) if c.name == "native zygote")
    assert not line.ok and not line.essential and "false failed" in line.detail and "gcc" in (line.fix or "")
    b = ContainerBackend()
    try:
        with b.launch(_spec(run_id, 0, Workload("noop"))) as inst:
            assert inst.wait(10) == 0
        assert b.zygote.kind == "python" and b.zygote.fallback is not None
        meta = b.metadata()
        assert meta["zygote"].startswith("python (the native one is unavailable: ") and "false failed" in meta["zygote"]
        assert meta["launcher"] == "zygote (python)" and meta["launches"] == {"zygote (python)": 1}
        with pytest.raises(BackendError, match="zygote must be one of"):
            b.launch(_spec(run_id, 1, zygote="java"))
    finally:
        b.close()


def test_a_build_is_cached_by_its_source_and_replaces_the_binaries_of_earlier_sources(tmp_path) -> None:
    from runtimes.container.launcher import native

    stale = tmp_path / "zygote" / "isobench-zygote-0123456789abcdef"  # an earlier source's binary
    stale.parent.mkdir()
    stale.write_bytes(b"old")
    built = native.build(tmp_path)
    assert built.parent == stale.parent and os.access(built, os.X_OK) and not stale.exists()
    mtime = built.stat().st_mtime_ns
    assert native.build(tmp_path) == built and built.stat().st_mtime_ns == mtime  # cached: not rebuilt
    # no temporary file left: the binary and its seal (runtimes.trust)
    assert sorted(p.name for p in built.parent.iterdir()) == sorted([built.name, f".{built.name}.json"])


@pytest.mark.privileged
def test_the_run_manifest_records_what_the_launches_ran(run_id, clean, tmp_path) -> None:
    """A scenario's per-launch options (here zygote = "python") show in the manifest: it is
    rewritten at the end with each backend's metadata, which records what its launches ran."""
    import json
    import tomllib

    from harness import runner, scenario

    text = ('[scenario]\nname = "z"\nbackends = ["container"]\nrepetitions = 2\nwarmups = 0\n'
            '[backend.container]\nzygote = "python"\n[[experiment]]\nmeasurement = "startup"\nworkloads = ["noop"]\n')
    run_dir = runner.run(scenario.parse(tomllib.loads(text), "z.toml", text), tmp_path, progress=False, run_id=run_id)
    meta = json.loads((run_dir / "manifest.json").read_text())["backends"]["container"]
    assert meta["launcher"] == "zygote (python)" and meta["zygote"] == "python (asked for)", meta
    assert meta["launches"] == {"zygote (python)": 2}


# -- the harness dies -------------------------------------------------------------------------------
HARNESS = """
import sys, threading, time
from runtimes.base import LaunchSpec
from runtimes.container.backend import ContainerBackend
from runtimes.workloads import Workload
run_id, where, kind = sys.argv[1], sys.argv[2], sys.argv[3]
backend = ContainerBackend(zygote=kind)
if where == "worker":  # the zygote's parent thread is gone before the harness is killed
    t = threading.Thread(target=backend.zygote.ensure)
    t.start()
    t.join()
inst = backend.launch(LaunchSpec(Workload("idle", {"seconds": 120}), run_id, f"isobench-{run_id}-0"))
inst.wait_ready(20)
print("PIDS", inst.proc.pid, backend.zygote.pid, backend.zygote.kind, flush=True)
time.sleep(120)
"""


@pytest.mark.privileged
@pytest.mark.parametrize(("where", "kind"), [("main", "native"), ("worker", "native"), ("main", "python")])
def test_a_sigkilled_harness_leaves_no_zygote(run_id, clean, where, kind) -> None:
    proc = subprocess.Popen([sys.executable, "-c", HARNESS, run_id, where, kind], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stderr is not None
    # generous: under TCG (a v2 guest) a Python harness takes tens of seconds to import and launch
    line = proc.stdout.readline() if select.select([proc.stdout], [], [], 120)[0] else ""
    if not line.startswith("PIDS "):
        proc.kill()
        proc.wait()
        pytest.fail(f"harness did not start a container: {line!r}; stderr: {proc.stderr.read()[-2000:]}")
    init_pid, zpid = (int(p) for p in line.split()[1:3])
    assert _status(zpid)["Name"] == ZYGOTE_COMM and line.split()[3] == kind
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert _gone(zpid), "the zygote outlived its harness"
    assert zpid not in orphaned_zygotes()
    cleanup_leftovers(run_id)  # the container (no parent-death signal from a worker-thread zygote)
    assert _gone(init_pid)
    for d in [d for d in cgroups.find_leftovers() if run_id in d.name]:
        cgroups.remove_dir(d)


# -- cgroup v2: born in the cgroup --------------------------------------------------------------------
@pytest.mark.v2host
@pytest.mark.privileged
def test_on_v2_the_zygote_clones_into_the_cgroup_and_the_fork_launcher_joins_it(run_id, clean) -> None:
    require(is_root() and cgroups.version() == 2, "needs a cgroup v2 host")
    b = ContainerBackend()
    try:
        for n, launcher in enumerate(["zygote", "fork"]):
            with b.launch(_spec(run_id, n, launcher=launcher)) as inst:
                inst.wait_ready(10)
                assert inst.cgroup is not None and inst.proc is not None
                own = Path(f"/proc/{inst.proc.pid}/cgroup").read_text().strip()
                assert own.startswith("0::/") and own.endswith(f"/{inst.name}"), own
                assert int((inst.cgroup.dirs[""] / "pids.max").read_text()) == 16
                # clone3(CLONE_INTO_CGROUP): no attach at all; the fork launcher's child writes cgroup.procs
                assert ("cgroup_attach" in inst.times.phases) == (launcher == "fork"), inst.times.phases
                inst.stop()
        assert b.zygote.kind == "native", b.zygote.describe()  # the C zygote's clone3 was the one tested
    finally:
        b.close()
