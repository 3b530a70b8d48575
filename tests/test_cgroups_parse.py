"""runtimes.cgroups' parsers and the Cgroup object on stand-in files: plain unit tests, no root."""

from __future__ import annotations

from pathlib import Path

from runtimes import cgroups
from runtimes.cgroups import Cgroup, Membership, Mount

HYBRID_MOUNTINFO = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate
50 23 0:50 / /proc rw,nosuid - proc proc rw
"""
HYBRID_PROC = """\
9:name=systemd:/
8:pids:/
4:memory:/process_api/abc
2:cpuacct:/
1:cpu:/
0::/
"""


def test_mountinfo_lists_cgroup_mounts_with_their_controllers_and_nothing_else() -> None:
    found = cgroups.parse_mountinfo(HYBRID_MOUNTINFO)
    assert [m.path.name for m in found] == ["cpu", "cpuacct", "memory", "pids", "systemd", "unified"]
    assert found[0] == Mount(Path("/sys/fs/cgroup/cpu"), 1, frozenset({"cpu"}), "/")
    assert found[4].controllers == frozenset({"name=systemd"})  # mount options like xattr are dropped
    assert found[5].version == 2 and found[5].controllers == frozenset()


def test_co_mounted_controllers_share_one_mount() -> None:
    text = "25 20 0:22 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
    (m,) = cgroups.parse_mountinfo(text)
    assert m.controllers == frozenset({"cpu", "cpuacct"}) and m.path == Path("/sys/fs/cgroup/cpu,cpuacct")


def test_proc_cgroup_lines_and_paths_by_controller() -> None:
    lines = cgroups.parse_proc_cgroup(HYBRID_PROC)
    assert lines[0] == Membership(9, frozenset({"name=systemd"}), "/")
    assert lines[-1].unified and not lines[2].unified
    assert cgroups.paths_by_controller(lines) == {"pids": "/", "memory": "/process_api/abc", "cpuacct": "/",
                                                  "cpu": "/", "": "/"}
    # a path may itself contain ':' (only the first two separate fields)
    (odd,) = cgroups.parse_proc_cgroup("0::/a:b\n")
    assert odd.path == "/a:b"


def test_host_path_follows_the_mount_root() -> None:
    whole = Mount(Path("/sys/fs/cgroup"), 2, frozenset(), "/")
    assert whole.host_path("/") == Path("/sys/fs/cgroup")
    assert whole.host_path("/a/b") == Path("/sys/fs/cgroup/a/b")
    # a container that sees only its own sub-tree mounted at /sys/fs/cgroup
    sub = Mount(Path("/sys/fs/cgroup"), 2, frozenset(), "/docker/x")
    assert sub.host_path("/docker/x/isobench-1") == Path("/sys/fs/cgroup/isobench-1")
    assert sub.host_path("/docker") is None and sub.host_path("/other") is None


def test_hierarchies_put_our_own_cgroup_in_each_hierarchy_once() -> None:
    twice = HYBRID_MOUNTINFO + "60 23 0:32 / /mnt/memory rw - cgroup cgroup rw,memory\n"
    hs = cgroups.hierarchies(twice, HYBRID_PROC)
    assert [h.mountpoint.name for h in hs] == ["cpu", "cpuacct", "memory", "pids", "systemd", "unified"]
    mem = next(h for h in hs if h.controllers == {"memory"})
    assert mem.own == Path("/sys/fs/cgroup/memory/process_api/abc")


def test_kv_files_keep_integer_pairs_only() -> None:
    assert cgroups.parse_kv("usage_usec 10\nnr_periods 0\nsome words here\nneg -1\nx y\n") == {
        "usage_usec": 10, "nr_periods": 0, "neg": -1}
    assert cgroups.read_kv(Path("/nonexistent/cpu.stat")) == {}


def test_wrap_tells_the_version_from_the_directories(tmp_path) -> None:
    assert Cgroup.wrap("isobench-x", {"": tmp_path}).version == 2
    v1 = Cgroup.wrap("isobench-x", {"cpu": tmp_path / "cpu", "cpuacct": tmp_path / "cpu"})
    assert v1.version == 1 and v1.unique_dirs() == [tmp_path / "cpu"]


def test_a_wrapped_v1_cgroup_reads_only_the_controllers_it_has(tmp_path) -> None:
    """libvirt's machine cgroup: only cpu (and cpuacct) are read, no KeyError on the rest."""
    (tmp_path / "cpu.stat").write_text("nr_periods 4\nnr_throttled 1\nthrottled_time 900\n")
    (tmp_path / "cpuacct.usage").write_text("12345\n")
    cg = Cgroup.wrap("isobench-dom", {"cpu": tmp_path, "cpuacct": tmp_path})
    assert cg.usage() == {"cpu_usage_ns": 12345, "cpu_nr_periods": 4, "cpu_nr_throttled": 1,
                          "cpu_throttled_ns": 900}
    assert Cgroup.wrap("isobench-none", {}).usage() == {}


def test_pids_include_sub_cgroups_and_a_removed_cgroup_has_none(tmp_path) -> None:
    top = tmp_path / "isobench-x"
    (top / "child" / "grandchild").mkdir(parents=True)
    (top / "cgroup.procs").write_text("10\n")
    (top / "child" / "cgroup.procs").write_text("")
    (top / "child" / "grandchild" / "cgroup.procs").write_text("30\n20\n")
    cg = Cgroup.wrap("isobench-x", {"": top})
    assert cg.pids() == [10, 20, 30]
    assert Cgroup.wrap("isobench-y", {"": tmp_path / "gone"}).pids() == []


def test_favordynmods_from_mount_options_and_the_boot_option() -> None:
    from runtimes.cgroups.parse import favordynmods

    off = ("30 25 0:26 / /sys/fs/cgroup/cpu rw,relatime shared:9 - cgroup cgroup rw,cpu\n"
           "35 25 0:31 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate\n")
    assert favordynmods(off, "quiet") == {"favordynmods": False, "mounts": [], "boot_option": None}
    on = off.replace("rw,nsdelegate", "rw,nsdelegate,favordynmods")
    got = favordynmods(on, "quiet cgroup_favordynmods=1 panic=1")
    assert got == {"favordynmods": True, "mounts": ["/sys/fs/cgroup/unified"], "boot_option": "1"}


def test_doctor_explains_the_cgroup_migration_cost() -> None:
    from harness.doctor import cgroup_migration_notes

    (off,) = cgroup_migration_notes(1, {"favordynmods": False, "mounts": []})
    assert "RCU grace period" in off and "cgroup_favordynmods=1" in off and "tasks" in off
    assert "CLONE_INTO_CGROUP" in cgroup_migration_notes(2, {"favordynmods": False, "mounts": []})[0]
    (on,) = cgroup_migration_notes(2, {"favordynmods": True, "mounts": ["/sys/fs/cgroup"]})
    assert "is on (/sys/fs/cgroup)" in on
