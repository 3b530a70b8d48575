"""The oci:runc / oci:crun peers: the bundle asks for what our container does, and runs it cleanly."""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import pytest

import runtimes
from runtimes import cgroups, owners, rootfs
from runtimes.base import LaunchSpec, Limits
from runtimes.container import mounts as container_mounts
from runtimes.container import namespaces as container_namespaces
from runtimes.oci import backend as oci_backend
from runtimes.oci import bundle, view
from runtimes.workloads import MARKER_FD, READY, Workload
from tests.conftest import isobench_cgroups, require

RUNTIMES = ["oci:runc", "oci:crun"]
#: the tests without a pids limit run on gVisor too (its sandbox's own threads need more than 12 pids)
ALL = [*RUNTIMES, "oci:runsc"]
LIMITS = Limits(cpu_quota=0.5, cpu_period_us=50_000, memory_mib=48, pids=12)
#: the namespace kinds as /proc/<pid>/ns names, what the container helper creates
NS_FILES = {"pid": "pid", "mnt": "mnt", "uts": "uts", "ipc": "ipc", "net": "net", "cgroup": "cgroup"}


def _spec(run_id: str, workload: Workload, limits: Limits = Limits(), n: int = 0, **extra) -> LaunchSpec:
    return LaunchSpec(workload, run_id, f"isobench-{run_id}-{n}", limits, timeout_s=30, extra=extra)


def _backend(name: str) -> runtimes.Backend:
    b = runtimes.get(name)
    reason = b.available()
    require(reason is None, f"{name}: {reason}")
    return b


def _left_behind(name: str) -> list[str]:
    """Anything of instance ``name`` still on the host: cgroups, runtime state, bundle."""
    found = [d for d in isobench_cgroups() if os.path.basename(d) == name]
    found += [str(p) for rt in oci_backend.RUNTIMES for p in oci_backend.runtime_cli(rt).state(name)]
    b = oci_backend.bundles_dir() / name
    return found + ([str(b)] if b.exists() else [])


def _tree_snapshot(root: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            st = os.lstat(os.path.join(dirpath, n))
            out[os.path.join(dirpath, n)] = (st.st_mtime_ns, st.st_size)
    return out


# -- the bundle, as data ----------------------------------------------------------------


def test_bundle_namespaces_are_the_containers() -> None:
    kinds = [n["type"] for n in bundle.namespaces()]
    assert kinds == [bundle.OCI_NAMESPACE[k] for k in container_namespaces.DEFAULT]
    assert sorted(kinds) == ["cgroup", "ipc", "mount", "network", "pid", "uts"]
    assert all("path" not in n for n in bundle.namespaces())  # fresh ones, none joined
    with pytest.raises(ValueError, match="no OCI namespace type for bogus"):
        bundle.namespaces(("pid", "bogus"))


def test_bundle_resources_match_what_cgroup_apply_writes() -> None:
    res = bundle.resources(LIMITS, cgroup_version=1, memsw=True)
    assert res["cpu"] == {"quota": LIMITS.cpu_quota_us, "period": 50_000} and LIMITS.cpu_quota_us == 25_000
    assert res["memory"] == {"limit": 48 << 20, "swap": 48 << 20, "swappiness": 0}  # no swap beyond it
    assert res["pids"] == {"limit": 12}
    assert bundle.resources(Limits(), cgroup_version=1, memsw=True, devices=None) == {}
    weighted = bundle.resources(Limits(cpu_quota=0.5, cpu_weight=10_000), cgroup_version=2, memsw=False, devices=None)
    assert weighted["cpu"]["shares"] == 102_400  # runc/crun turn OCI shares into cpu.weight on v2
    v2 = bundle.resources(Limits(memory_mib=64), cgroup_version=2, memsw=False, devices=None)
    assert v2 == {"memory": {"limit": 64 << 20}}  # no swap accounting: not asked for
    # the device rules the built-in container enforces (tests/test_seccomp_devices.py compares more)
    assert res["devices"][0] == {"allow": False, "access": "rwm"} and len(res["devices"]) > 6


def test_bundle_mounts_follow_the_container_mount_plan() -> None:
    require(os.path.exists("/bin/busybox"), "busybox-static not installed")
    root = rootfs.build()
    plan = bundle.mount_plan(root)
    ops = container_mounts.plan(root)
    assert plan["readonly"] is True
    dests = [m["destination"] for m in plan["mounts"]]
    assert dests == ["/proc", "/dev", "/dev/shm", "/tmp"]
    assert len(plan["maskedPaths"]) == sum(isinstance(o, container_mounts.Mask) for o in ops)
    assert len(plan["readonlyPaths"]) == sum(isinstance(o, container_mounts.ReadOnly) for o in ops)
    dev = plan["mounts"][1]
    assert dev["type"] == "tmpfs" and "size=64k" in dev["options"] and "nosuid" in dev["options"]
    # every destination exists in the read-only rootfs or inside a tmpfs mounted before it,
    # so the runtimes never have to create a mountpoint in the shared cache
    for d in dests:
        assert (root / d.lstrip("/")).is_dir() or os.path.dirname(d) in dests


def test_bundle_config_is_complete_and_rejects_bad_names() -> None:
    require(os.path.exists("/bin/busybox"), "busybox-static not installed")
    root = rootfs.build()
    spec = _spec("unit", Workload("noop"), LIMITS)
    cfg = bundle.config(spec, root, "/isobench-unit-0", cgroup_version=1, memsw=True)
    assert cfg["process"]["args"] == Workload("noop").argv()
    assert cfg["root"] == {"path": str(root), "readonly": True}
    assert cfg["linux"]["cgroupsPath"] == "/isobench-unit-0"
    assert cfg["hostname"] == spec.instance
    assert set(cfg["process"]["capabilities"]["bounding"]) == {f"CAP_{c}" for c in bundle.container_caps.OCI_DEFAULT}
    with pytest.raises(ValueError, match="must be absolute"):
        bundle.config(spec, root, "isobench-unit-0", cgroup_version=1, memsw=True)
    with pytest.raises(ValueError, match="must contain 'isobench'"):
        bundle.config(LaunchSpec(Workload("noop"), "x", "other-0"), root, "/x", cgroup_version=1, memsw=True)


def test_only_crun_gets_the_hook_that_keeps_an_image_roots_flags(tmp_path: Path) -> None:
    """crun binds the root anew without nosuid,nodev (runc keeps them): its image bundles carry a
    createContainer hook remounting the root with them (checked from inside: test_image_privileges)."""
    assert oci_backend.runtime_cli("crun", "crun").drops_root_flags
    assert not oci_backend.runtime_cli("runc", "runc").drops_root_flags
    hook = bundle.root_flags_hook("/run/isobench/x/isobench-r-0/root", "/bin/sh", "/usr/bin/mount")
    assert hook["path"] == "/bin/sh" and hook["args"][-2:] == ["/usr/bin/mount", "/run/isobench/x/isobench-r-0/root"]
    assert "read" in hook["args"][2] and "remount,bind,nosuid,nodev" in hook["args"][2]
    spec = _spec("unit", Workload("noop"), LIMITS)
    assert "hooks" not in bundle.config(spec, tmp_path, "/isobench-unit-0", cgroup_version=1, memsw=True)
    cfg = bundle.config(spec, tmp_path, "/isobench-unit-0", cgroup_version=1, memsw=True,
                        hooks={"createContainer": [hook]})
    assert cfg["hooks"] == {"createContainer": [hook]}


def test_a_bundle_that_cannot_be_written_leaves_no_directory(tmp_path: Path) -> None:
    d = tmp_path / "isobench-unit-0"
    with pytest.raises(TypeError):
        bundle.write(d, {"not json": object()})
    assert not d.exists()
    assert json.loads(bundle.write(d, {"ok": 1}).read_text()) == {"ok": 1}


def test_view_puts_every_hierarchy_at_our_own_cgroup() -> None:
    mountinfo = (
        "30 25 0:26 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n"
        "31 25 0:27 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
        "32 25 0:28 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd\n"
        "33 25 0:29 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n"
        "34 25 0:30 / /sys/fs/cgroup/blkio rw - cgroup cgroup rw,blkio\n"
    )
    proc = "5:name=systemd:/\n3:memory:/process_api/abc\n2:cpu:/\n0::/\n"
    hs = {h.mountpoint.name: h for h in view.hierarchies(mountinfo, proc)}
    assert set(hs) == {"cpu", "memory", "systemd", "unified"}  # not in blkio: not ours
    assert hs["memory"].own == Path("/sys/fs/cgroup/memory/process_api/abc")
    assert hs["cpu"].own == Path("/sys/fs/cgroup/cpu") and hs["unified"].version == 2
    v = view.View(tuple((str(h.own), str(h.mountpoint)) for h in hs.values() if h.own != h.mountpoint),
                  (), tuple(hs.values()))
    assert v.binds == (("/sys/fs/cgroup/memory/process_api/abc", "/sys/fs/cgroup/memory"),)
    assert Path("/sys/fs/cgroup/memory/process_api/abc/isobench-r-0") in v.dirs("isobench-r-0")


def test_crun_hides_the_hybrid_cgroup2_mount_and_runc_does_not() -> None:
    hybrid = cgroups.describe().get("hybrid", False)
    crun, runc = view.make(hide_cgroup2_on_hybrid=True), view.make(hide_cgroup2_on_hybrid=False)
    assert bool(crun.unmounts) == bool(hybrid) and runc.unmounts == ()
    assert all(h.version == 1 for h in crun.hierarchies) or not hybrid
    # every hierarchy's cgroup for /<name> lies below our own cgroup there
    own = cgroups.own_paths()
    for h in runc.hierarchies:
        for c in h.controllers & set(cgroups.V1_CONTROLLERS):
            assert str(h.own).endswith(own[c].rstrip("/")) or own[c] == "/"


def test_unknown_oci_backend_is_one_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown OCI backend 'oci:podman'"):
        oci_backend.OciBackend(name="oci:podman")


# -- the runtimes, for real -------------------------------------------------------------


@pytest.mark.privileged
@pytest.mark.parametrize("name", ALL)
def test_noop_reports_ready_and_exit_status_and_leaves_nothing(name: str, run_id: str, no_leftovers) -> None:
    b = _backend(name)
    root = rootfs.build()
    before = _tree_snapshot(root)
    with b.launch(_spec(run_id, Workload("noop"))) as inst:
        inst.wait_ready(20)
        assert inst.wait(20) == 0
    t = inst.times
    assert t.t_launch < t.t_ready <= t.t_exit <= t.t_clean
    assert "bundle" in t.phases
    assert _left_behind(inst.name) == []
    assert _tree_snapshot(root) == before, "the runtime wrote into the shared rootfs"
    holder = b._holder.pid  # type: ignore[attr-defined]
    assert holder is not None and os.path.exists(f"/proc/{holder}")
    b.close()  # the namespace holder goes with the backend
    assert not os.path.exists(f"/proc/{holder}")


@pytest.mark.privileged
@pytest.mark.parametrize("name", ALL)
def test_exit_status_of_the_workload_is_the_runtimes(name: str, run_id: str, no_leftovers) -> None:
    b = _backend(name)
    argv = ["/bin/busybox", "sh", "-c", f"echo '{READY}' >&{MARKER_FD}; exit 7"]
    with b.launch(_spec(run_id, Workload("noop"), argv=argv)) as inst:
        inst.wait_ready(20)
        assert inst.wait(20) == 7
    assert _left_behind(inst.name) == []


@pytest.mark.privileged
@pytest.mark.parametrize("name", RUNTIMES)
def test_same_namespaces_and_limits_as_our_own_cgroups(name: str, run_id: str, no_leftovers) -> None:
    """The runtime's cgroup holds the values Cgroup.create (the built-in runtime's) writes,
    and the workload is in a fresh namespace of every kind the container creates."""
    b = _backend(name)
    ours = cgroups.Cgroup.create(f"isobench-{run_id}-ref", LIMITS)
    try:
        with b.launch(_spec(run_id, Workload("idle"), LIMITS)) as inst:
            inst.wait_ready(20)
            assert inst.cgroup is not None
            pids = inst.cgroup.pids()
            assert pids, "the container's cgroup holds no process"
            for kind in container_namespaces.DEFAULT:
                f = NS_FILES[kind]
                assert container_namespaces.ns_id(pids[0], f) != container_namespaces.ns_id("self", f), kind
            for ctrl, files in {"cpu": ("cpu.cfs_quota_us", "cpu.cfs_period_us"),
                                "memory": ("memory.limit_in_bytes", "memory.memsw.limit_in_bytes",
                                           "memory.swappiness"),
                                "pids": ("pids.max",)}.items():
                if ours.version != 1:
                    break
                for f in files:
                    if (ours.dirs[ctrl] / f).exists():
                        theirs = (inst.cgroup.dirs[ctrl] / f).read_text()
                        assert theirs == (ours.dirs[ctrl] / f).read_text(), f
            if ours.version == 2:
                for f in ("cpu.max", "memory.max", "memory.swap.max", "pids.max"):
                    if (ours.dirs[""] / f).exists():
                        assert (inst.cgroup.dirs[""] / f).read_text() == (ours.dirs[""] / f).read_text(), f
            usage = inst.usage()
            assert usage["pids_current"] >= 1 and "cpu_usage_ns" in usage and "mem_current_bytes" in usage
            assert inst.processes()[0] == inst.proc.pid  # the runtime itself counts for memory
            inst.stop()
            assert inst.wait(20) != 0
    finally:
        ours.remove()
    assert _left_behind(inst.name) == []


@pytest.mark.privileged
@pytest.mark.parametrize("name", ALL)
def test_cleanup_leftovers_removes_a_container_whose_runtime_died(name: str, run_id: str, no_leftovers) -> None:
    b = _backend(name)
    inst = b.launch(_spec(run_id, Workload("idle")))
    try:
        inst.wait_ready(20)
        os.kill(inst.proc.pid, signal.SIGKILL)  # a crashed harness: state, cgroups and bundle stay
        inst.proc.wait()
        assert runtimes.oci.cleanup_leftovers(run_id) == []  # while its harness (this process) lives
        owners.release(run_id)  # ... as if it were gone
        assert _left_behind(inst.name), "a killed runtime left nothing to clean?"
        removed = runtimes.oci.cleanup_leftovers(run_id)
        assert any(inst.name in r for r in removed)
        assert _left_behind(inst.name) == []
        assert runtimes.oci.cleanup_leftovers(run_id) == []
    finally:
        inst.cleanup()  # idempotent after the sweep
    assert _left_behind(inst.name) == []


@pytest.mark.privileged
@pytest.mark.parametrize("name", ALL)
def test_stop_before_ready_and_invalid_limits(name: str, run_id: str, no_leftovers) -> None:
    b = _backend(name)
    with pytest.raises(runtimes.base.BackendError, match="memory limit must be >= 4 MiB"):
        b.launch(_spec(run_id, Workload("noop"), Limits(memory_mib=1), n=1))
    assert _left_behind(f"isobench-{run_id}-1") == []
    inst = b.launch(_spec(run_id, Workload("idle"), n=2))
    inst.cleanup()  # at once, whatever state the runtime is in
    inst.cleanup()
    assert inst.times.t_clean is not None
    assert _left_behind(inst.name) == []


def test_the_oci_doctor_line_uses_the_backends_lookup(monkeypatch: pytest.MonkeyPatch) -> None:
    """runc lives in /usr/sbin on Debian, off a user's PATH: doctor finds it where the backend does."""
    from runtimes.oci import checks, find_runtime
    from runtimes.oci.checks import RUNTIMES  # runc and crun: runsc has a line of its own

    monkeypatch.setenv("PATH", "/nonexistent")
    (line,) = checks.checks()
    found = [r for r in RUNTIMES if find_runtime(r)]
    assert line.ok == (found == list(RUNTIMES)) and line.detail == (", ".join(found) or "none")
    if os.path.exists("/usr/sbin/runc"):
        assert "runc" in line.detail  # `which runc` under this PATH would have missed it
    assert shutil.which("runc") is None
