"""Hardening at runc/crun parity, proved from inside the built-in container.

Each test runs a probe inside a container and asserts that a gap is closed:
device nodes a workload makes are unusable, the seccomp filter is on and blocks
nested user namespaces, the session keyring is not the harness's, runc's masked
/proc paths read empty and its read-only ones refuse writes, tmpfs mounts are
nodev and size-limited, rlimits and oom_score_adj are the spec's.  What busybox
cannot ask (keyctl, unshare(CLONE_NEWUSER) with its errno) is asked by
``tests/probe.c``, compiled static here and put into a copy of the rootfs.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from runtimes import cgroups, owners
from runtimes.base import BackendError, Limits
from runtimes.container import mounts
from runtimes.container.backend import ContainerBackend
from runtimes.container.devices import bpf
from runtimes.container.devices import rules as devices
from runtimes.container.security import hardening, seccomp
from runtimes.marker import MAX_LINE, MarkerChannel
from runtimes.wait import wait_until
from runtimes.workloads import Workload
from tests.conftest import require
from tests.test_container import PRELUDE, _spec, clean, run_script  # noqa: F401 - clean: a fixture

#: every test here: no cgroup, mount, init process or netns left behind (test_container's fixture)
pytestmark = pytest.mark.usefixtures("clean")
PROBE = "/usr/local/bin/isobench-probe"
REPO = Path(__file__).resolve().parent.parent
EPERM, ENOENT, EACCES, EROFS = 1, 2, 13, 30


@pytest.fixture(scope="module")
def probe_rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the workload rootfs with the probe in it (the shared cache is never written)."""
    require(shutil.which("gcc") is not None, "gcc missing (isobench doctor --fix installs it)")
    base = ContainerBackend()
    reason = base.available()
    require(reason is None, f"container backend unavailable: {reason}")
    root = tmp_path_factory.mktemp("probe") / "rootfs"
    shutil.copytree(base.rootfs(), root, symlinks=True)
    (root / "usr/local/bin").mkdir(parents=True, exist_ok=True)
    src = Path(__file__).with_name("probe.c")
    r = subprocess.run(["gcc", "-static", "-O2", "-o", str(root / PROBE.lstrip("/")), str(src)],
                       capture_output=True, text=True)
    require(r.returncode == 0, f"cannot build the probe statically (libc6-dev?): {r.stderr[-300:]}")
    return root


@pytest.fixture(scope="module")
def backend(probe_rootfs: Path) -> Iterator[ContainerBackend]:
    b = ContainerBackend(rootfs_dir=str(probe_rootfs))
    b.prepare()  # the backend's own cgroups (devices, v1) exist before any test's leftover check
    yield b
    b.close()  # its zygote goes (and is reaped) with it


@pytest.fixture(scope="module")
def unconfined(probe_rootfs: Path) -> Iterator[ContainerBackend]:
    b = ContainerBackend(rootfs_dir=str(probe_rootfs), seccomp=seccomp.UNCONFINED)
    b.prepare()
    yield b
    b.close()


def _block_device() -> tuple[int, int]:
    """A real block device of this host (major, minor), e.g. its disk."""
    for entry in sorted(Path("/sys/dev/block").iterdir()):
        major, minor = entry.name.split(":")
        if int(major) != 7:  # prefer a disk to a loop device
            return int(major), int(minor)
    return 7, 0


@pytest.mark.privileged
@pytest.mark.parametrize("where", ["/tmp", "/dev/shm", "/dev"])
def test_device_nodes_a_workload_makes_cannot_be_opened(backend, run_id, tmp_path, where) -> None:
    bmaj, bmin = _block_device()
    rc, res, log = run_script(backend, run_id, textwrap.dedent(f"""
        {PROBE} node c 1 11 {where}/kmsg  # the host's kernel log: the issue's write into dmesg
        {PROBE} node b {bmaj} {bmin} {where}/disk
    """), tmp_path)
    assert rc == 0, log
    # runc allows mknod ("m") and relies on the open being refused: nodev (EACCES) first, the
    # device cgroup (EPERM) behind it; either is a refusal.  /dev is read-only instead (mknod:
    # EROFS, so there is nothing to open).
    refused = {str(EACCES), str(EPERM), str(ENOENT)}
    for kind in ("c", "b"):
        assert res[f"{kind}_mknod"] in ("0", str(EROFS)), res
        assert res[f"{kind}_open_read"] in refused and res[f"{kind}_open_write"] in refused, res


@pytest.mark.privileged
def test_the_six_devices_stay_usable_and_the_kernel_holds_the_rules(backend, run_id, tmp_path) -> None:
    script = ("res null $(echo x > /dev/null && echo ok); res urandom $(head -c 4 /dev/urandom | wc -c); "
              "echo 'ISOBENCH READY' >&3; sleep 30")
    spec = _spec(run_id, log_dir=tmp_path, argv=["/bin/sh", "-c", PRELUDE + script])
    with backend.launch(spec) as inst:
        inst.wait_ready(10)
        if cgroups.version() == 1:
            assert inst.devices is not None and inst.devices.pids() == inst.processes()
            assert inst.devices.listing() == [r.v1() for r in devices.DEFAULT_RULES if r.allow]
        else:
            assert bpf.attached(inst.cgroup.dirs[""]) == 1
        inst.stop()
        inst.wait(10)
    assert inst.results == {"null": "ok", "urandom": "4"}, Path(inst.log_path).read_text()


@pytest.mark.privileged
def test_on_v1_a_backend_s_containers_share_one_devices_cgroup_made_before_any_launch(run_id, tmp_path) -> None:
    """The rules are the same for every container: one devices cgroup per backend (prepare, before
    t_launch), joined by each init, removed by close(); the cold variant makes one per instance."""
    require(cgroups.version() == 1, "the v1 devices controller (v2 attaches a program per cgroup)")
    from runtimes.container.cold import ColdContainerBackend
    from runtimes.container.devices.rules import shared_owner

    b = ContainerBackend()
    try:
        b.prepare()
        shared = b.devices.shared() if b.devices is not None else None
        assert shared is not None and shared_owner(shared.path.name) == owners.me() and shared.pids() == []
        with b.launch(_spec(run_id, 0, Workload("idle", {"seconds": 30}))) as one, \
                b.launch(_spec(run_id, 1, Workload("idle", {"seconds": 30}))) as two:
            one.wait_ready(10)
            two.wait_ready(10)
            assert one.devices is two.devices is shared and not one.own_devices
            assert sorted(shared.pids()) == sorted(one.processes() + two.processes())
        assert shared.path.is_dir()  # the instances went, the backend's cgroup stays ...
    finally:
        b.close()
    assert not shared.path.exists()  # ... until close()
    cold = ColdContainerBackend()
    try:
        with cold.launch(_spec(run_id, 2, Workload("noop"))) as inst:
            inst.wait(10)
            assert inst.own_devices and inst.devices is not None and run_id in inst.devices.path.name
            own = inst.devices.path
        assert not own.exists()
    finally:
        cold.close()


@pytest.mark.privileged
def test_seccomp_filter_is_on_and_blocks_nested_user_namespaces(backend, run_id, tmp_path) -> None:
    rc, res, log = run_script(backend, run_id, textwrap.dedent(f"""
        res seccomp $(grep '^Seccomp:' /proc/self/status | cut -f2)
        unshare -r true; res unshare_r $?
        unshare -rm sh -c "mount -t tmpfs x /mnt"; res unshare_rm $?
        {PROBE} userns
    """), tmp_path)
    assert rc == 0, log
    assert res["seccomp"] == "2"
    assert res["unshare_r"] != "0" and res["unshare_rm"] != "0"
    assert res["userns"] == str(EPERM)  # the filter's answer, not the kernel's


@pytest.mark.privileged
def test_unconfined_has_no_filter(unconfined, run_id, tmp_path) -> None:
    rc, res, log = run_script(unconfined, run_id, "res seccomp $(grep '^Seccomp:' /proc/self/status | cut -f2)",
                              tmp_path)
    assert rc == 0, log
    assert res["seccomp"] == "0"


@pytest.mark.privileged
def test_session_keyring_is_not_the_harness(backend, unconfined, run_id, tmp_path) -> None:
    mine = hardening.session_keyring()
    rc, res, log = run_script(backend, run_id, f"{PROBE} keyring", tmp_path)
    assert rc == 0, log
    assert res == {"keyring_errno": str(EPERM)}  # keyctl itself is filtered out
    rc, res, log = run_script(unconfined, run_id, f"{PROBE} keyring", tmp_path, n=1)
    assert rc == 0, log
    assert int(res["keyring"]) > 0 and int(res["keyring"]) != mine  # its own session keyring


@pytest.mark.privileged
def test_masked_proc_paths_read_empty_and_readonly_ones_refuse_writes(backend, run_id, tmp_path) -> None:
    present = [p for p in mounts.PROC_MASKED if Path(f"/proc/{p}").exists()]
    assert "keys" in present  # at least one the host really has
    # a masked file reads zero bytes, a masked directory lists nothing
    checks = "".join(f'res m_{p} $(if [ -d /proc/{p} ]; then ls -A /proc/{p}; else cat /proc/{p}; fi | wc -c)\n'
                     for p in present)
    rc, res, log = run_script(backend, run_id, checks + textwrap.dedent("""
        echo renamed > /proc/sys/kernel/hostname; res sys $?
        echo 1 > /proc/sys/vm/drop_caches; res drop_caches $?
        echo h > /proc/sysrq-trigger; res sysrq $?
    """), tmp_path)
    assert rc == 0, log
    assert {k: v for k, v in res.items() if k.startswith("m_")} == {f"m_{p}": "0" for p in present}
    assert res["sys"] != "0" and res["drop_caches"] != "0" and res["sysrq"] != "0"


@pytest.mark.privileged
def test_tmpfs_mounts_are_nodev_and_size_limited(backend, run_id, tmp_path) -> None:
    rc, res, log = run_script(backend, run_id, textwrap.dedent("""
        for m in /dev /dev/shm /tmp; do res "opts$m" $(grep " $m " /proc/mounts | cut -d' ' -f4); done
        dd if=/dev/zero of=/tmp/fill bs=1M count=100 2>/dev/null; res dd $?
        res written $(( $(wc -c < /tmp/fill) >> 20 ))
    """), tmp_path)
    assert rc == 0, log
    for m in ("/dev/shm", "/tmp"):
        assert "nodev" in res[f"opts{m}"].split(","), res
    assert "ro" in res["opts/dev"].split(","), res  # populated, then read-only (mounts.DEV_FINAL)
    assert "size=65536k" in res["opts/tmp"] and "size=65536k" in res["opts/dev/shm"]
    assert res["dd"] != "0" and int(res["written"]) <= 64


@pytest.mark.privileged
def test_writable_root_is_nodev_too(backend, run_id, tmp_path) -> None:
    rc, res, log = run_script(backend, run_id, f"{PROBE} node c 1 11 /kmsg", tmp_path, read_only=False)
    assert rc == 0, log
    assert res["c_mknod"] == "0" and res["c_open_read"] == str(EACCES), res


@pytest.mark.privileged
def test_rlimits_and_oom_score_adj_are_the_specs(backend, run_id, tmp_path) -> None:
    own = Path("/proc/self/oom_score_adj")
    before = own.read_text().strip()
    own.write_text("7")  # the harness's own value must not leak into the container
    try:
        rc, res, log = run_script(backend, run_id, textwrap.dedent("""
            res nofile $(ulimit -n)
            res oom $(cat /proc/self/oom_score_adj)
        """), tmp_path)
    finally:
        own.write_text(before)
    assert rc == 0, log
    assert res["nofile"] == str(dict((n, s) for n, s, _ in hardening.RLIMITS)["RLIMIT_NOFILE"])
    assert res["oom"] == str(hardening.OOM_SCORE_ADJ)


# -- the harness against hostile workloads ---------------------------------------------------
def test_marker_line_cap_unit() -> None:
    ch = MarkerChannel()
    ch.feed(b"ISOBENCH RESULT a=1\nISOBENCH REA")
    assert ch.results == {"a": "1"} and ch.error is None
    ch.feed(b"x" * (MAX_LINE + 1))
    assert ch.error is not None and "longer than" in ch.error and ch._partial == b""
    ch.feed(b"DY\n" + b"y" * 1000)  # nothing more is parsed or kept
    assert ch.t_ready is None and ch.discarded > MAX_LINE + 1000
    with pytest.raises(BackendError, match="longer than 65536 bytes"):
        ch.wait_ready(1, "w")


@pytest.mark.privileged
def test_unbounded_output_without_newlines_fails_clearly_in_bounded_memory(backend, run_id, tmp_path) -> None:
    me = psutil.Process()
    rss = me.memory_info().rss
    spec = _spec(run_id, log_dir=tmp_path, argv=["/bin/sh", "-c", "yes | tr -d '\\n' >&3"])
    with backend.launch(spec) as inst:
        with pytest.raises(BackendError, match="longer than"):
            inst.wait_ready(20)
        wait_until(lambda: inst.marker.discarded > 64 << 20, 30)  # the workload keeps writing
        assert inst.marker.discarded > 64 << 20
        assert me.memory_info().rss - rss < 32 << 20, "the harness kept what it read"


@pytest.mark.privileged
def test_a_workload_that_makes_sub_cgroups_is_cleaned_up_fully(run_id, tmp_path) -> None:
    """On bare the workload sees the host's cgroup tree: it nests cgroups below its own and moves
    its children there; cleanup kills them and removes the tree deepest first."""
    from runtimes.bare import BareBackend

    script = textwrap.dedent("""
        for c in memory pids; do
            d=/sys/fs/cgroup/$c$(grep ":$c:" /proc/self/cgroup | cut -d: -f3)/isobench-sub/deeper
            mkdir -p $d
            sh -c "echo \\$\\$ > $d/cgroup.procs; exec sleep 1000" &
        done
        sleep 0.3; echo 'ISOBENCH READY' >&3; wait
    """)
    spec = _spec(run_id, log_dir=tmp_path, limits=Limits(pids=64), argv=["/bin/sh", "-c", script])
    with BareBackend().launch(spec) as inst:
        inst.wait_ready(20)
        assert inst.cgroup is not None
        nested = [d for d in inst.cgroup.unique_dirs() if (d / "isobench-sub/deeper").is_dir()]
        assert len(nested) >= 1 and len(inst.processes()) >= 3
    assert not any(d.exists() for d in inst.cgroup.unique_dirs())


@pytest.mark.privileged
def test_exec_seccomp_option(tmp_path) -> None:
    def run(*opts: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "harness", "exec", *opts, "--", "/bin/sh", "-c",
                               "grep '^Seccomp:' /proc/self/status"], capture_output=True, text=True,
                              cwd=REPO, timeout=60)

    assert run().stdout.split() == ["Seccomp:", "2"]
    assert run("--seccomp", "unconfined").stdout.split() == ["Seccomp:", "0"]
    bad = run("--seccomp", str(tmp_path / "none.json"))
    assert bad.returncode != 0 and len(bad.stderr.strip().splitlines()) == 1 and "none.json" in bad.stderr
