"""The native zygote's request encoding and the mount-op lowering (pure logic; the C side that
reads it is exercised by every container test, the native zygote being the default)."""

from __future__ import annotations

import os
import re
import struct
from pathlib import Path

import pytest

from runtimes import syscalls as sc
from runtimes.container import mounts, prims
from runtimes.container.launcher import init, template, wire

RO = sc.MS_RDONLY | sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC


def _records(msg: bytes) -> list[tuple[bytes, bytes]]:
    """Split a request into (tag, payload) as the C side's walk() does."""
    out, off = [], 1
    while off < len(msg):
        tag, (n,) = msg[off:off + 1], struct.unpack_from("<I", msg, off + 1)
        off += 5
        assert off + n <= len(msg), "a record runs past the message"
        out.append((tag, msg[off:off + n]))
        off += n
    return out


def _decode_prim(payload: bytes) -> prims.Prim:
    """The C side's parse_op, in Python: fixed fields, then five NUL-terminated (or empty) strings."""
    prim, cond, flags, mode, dev = struct.unpack_from("<BBQIQ", payload)
    off, strings = 22, []
    for _ in range(5):
        (n,) = struct.unpack_from("<I", payload, off)
        raw = payload[off + 4:off + 4 + n]
        assert n == 0 or raw.endswith(b"\0") and b"\0" not in raw[:-1]
        strings.append(raw[:-1].decode())
        off += 4 + n
    assert off == len(payload)
    desc, src, dst, fstype, data = strings
    return prims.Prim(prim, desc, dst, src, fstype, data, flags, mode, dev, cond)


def test_every_op_of_both_plans_and_of_the_template_halves_lowers_and_round_trips(tmp_path: Path) -> None:
    for ro in (True, False):
        plan = tuple(mounts.plan(tmp_path, read_only=ro))
        halves = template.split(plan)
        lists = [plan] + ([halves.shared, halves.instance] if halves is not None else [])
        for ops in lists:
            for op in ops:
                low = wire.lower(op)
                assert low and all(p.describe == op.describe() for p in low)  # errors name the step
                recs = _records(b"L" + wire.encode_ops(b"m", [op]))
                assert [_decode_prim(payload) for _, payload in recs] == low
    assert template.split(tuple(mounts.plan(tmp_path))) is not None  # the read-only plan is prepared


def test_conditional_ops_decide_at_run_time_as_their_execute_does() -> None:
    ro = wire.lower(mounts.ReadOnly("/r/proc/sys"))
    assert [(p.prim, p.cond) for p in ro] == [(prims.MOUNT, prims.EXISTS)] * 2
    assert ro[0].flags == sc.MS_BIND and ro[1].flags == sc.MS_REMOUNT | sc.MS_BIND | RO
    mask = wire.lower(mounts.Mask("/r/proc/kcore"))
    assert [(p.cond, p.fstype, p.src) for p in mask] == [(prims.IS_DIR, "tmpfs", "tmpfs"),
                                                        (prims.EXISTS_NOT_DIR, "", "/dev/null")]
    assert mask[0].flags == RO and mask[0].data == "size=0" and mask[1].flags == sc.MS_BIND


def test_lowering_keeps_each_op_s_flags_modes_and_device_numbers() -> None:
    assert wire.lower(mounts.Bind("/a", "/a")) == [prims.Prim(prims.MOUNT, "bind /a -> /a", "/a", "/a", flags=sc.MS_BIND)]
    bind_ro = wire.lower(mounts.Bind("/a", "/b", readonly=True, flags=sc.MS_NOSUID))
    assert bind_ro[1].flags == sc.MS_REMOUNT | sc.MS_BIND | sc.MS_RDONLY | sc.MS_NOSUID and bind_ro[1].src == ""
    tmp = wire.lower(mounts.Tmpfs("/t", 0o1777, sc.MS_NOSUID, "64k"))[0]
    assert (tmp.src, tmp.fstype, tmp.flags, tmp.data) == ("tmpfs", "tmpfs", sc.MS_NOSUID, "mode=1777,size=64k")
    node = wire.lower(mounts.Device("/dev/null", "/r/dev/null", 0o20666, 0x103))
    assert [(p.prim, p.dst, p.mode, p.dev, p.src) for p in node] == [(prims.MKNOD, "/r/dev/null", 0o20666, 0x103, "")]
    st = os.stat("/dev/null")
    assert mounts.Device.like("/dev/null", "/r/dev/null") == mounts.Device("/dev/null", "/r/dev/null",
                                                                           st.st_mode, st.st_rdev)
    assert wire.lower(mounts.Symlink("/proc/self/fd", "/r/dev/fd"))[0].src == "/proc/self/fd"
    assert wire.lower(mounts.Dir("/r/dev/shm", 0o1777))[0].mode == 0o1777
    assert wire.lower(mounts.PivotRoot("/r"))[0].prim == prims.PIVOT
    assert [p.prim for p in wire.lower(mounts.Overlay("/r"))] == [prims.MOUNT, prims.MKDIR, prims.MKDIR, prims.MOUNT]


def test_an_op_the_c_side_does_not_know_is_refused_by_name() -> None:
    class Strange:
        def execute(self) -> None: ...

        def describe(self) -> str:
            return "strange thing"

    with pytest.raises(wire.WireError, match="strange thing"):
        wire.lower(Strange())


def _cfg(**kw: object) -> init.InitConfig:
    base: dict[str, object] = dict(argv=("/bin/busybox", "true"), env={"PATH": "/bin", "A": "b c"}, hostname="h",
                                   ns_flags=sc.CLONE_NEWNS | sc.CLONE_NEWNET, cgroupns=True, mount_plan=(),
                                   keep_caps=(1 << 40) | 5, last_cap=40, lo_request=b"\x01\x00\x02", die_with_parent=True,
                                   reset_signals=(2, 13), attach_files=("/sys/fs/cgroup/pids/x/tasks",),
                                   seccomp_bpf=bytes(16), rlimits=((7, 1024, 1024), (3, -1, -1)), oom_score_adj=-5)
    base.update(kw)
    return init.InitConfig(**base)  # type: ignore[arg-type]


def test_a_launch_request_carries_every_field_of_the_config() -> None:
    msg = wire.encode_launch(_cfg(), wire.plan_number(3))
    assert msg[:1] == b"L"
    recs = _records(msg)
    by: dict[bytes, list[bytes]] = {}
    for tag, payload in recs:
        by.setdefault(tag, []).append(payload)
    fixed = struct.unpack("<QQIBBBBi", by[b"F"][0])
    assert fixed == (sc.CLONE_NEWNS | sc.CLONE_NEWNET, (1 << 40) | 5, 40, 1, 1, 1, 1, -5)
    assert by[b"a"] == [b"/bin/busybox\0", b"true\0"] and by[b"e"] == [b"PATH=/bin\0", b"A=b c\0"]
    assert by[b"h"] == [b"h\0"] and by[b"c"] == [b"/\0"] and by[b"t"] == [b"/sys/fs/cgroup/pids/x/tasks\0"]
    assert [struct.unpack("<i", k)[0] for k in by[b"k"]] == [2, 13]
    assert [struct.unpack("<iqq", r) for r in by[b"r"]] == [(7, 1024, 1024), (3, -1, -1)]
    assert by[b"l"] == [b"\x01\x00\x02"] and by[b"s"] == [bytes(16)] and by[b"p"] == [struct.pack("<I", 3)]
    assert b"d" not in by  # no v2 cgroup directory: the child joins by itself
    unconfined = dict(_records(wire.encode_launch(_cfg(seccomp_bpf=None, lo_request=None, oom_score_adj=None,
                                                       cgroup_dir="/sys/fs/cgroup/x"), b"")))
    assert b"s" not in unconfined and b"l" not in unconfined and unconfined[b"d"] == b"/sys/fs/cgroup/x\0"
    assert struct.unpack("<QQIBBBBi", unconfined[b"F"])[6:] == (0, 0)  # no oom_score_adj to write


def test_a_prepare_request_carries_the_number_and_both_halves(tmp_path: Path) -> None:
    halves = template.split(tuple(mounts.plan(tmp_path)))
    assert halves is not None
    recs = _records(wire.encode_prepare(7, halves))
    assert recs[0] == (b"p", struct.pack("<I", 7))
    tags = [t for t, _ in recs[1:]]
    assert tags == sorted(tags, key=lambda t: t != b"S")  # shared first, then the per-container ops
    assert tags.count(b"S") == sum(len(wire.lower(op)) for op in halves.shared)
    assert tags.count(b"I") == sum(len(wire.lower(op)) for op in halves.instance)


def test_a_nul_in_a_string_is_refused_not_truncated() -> None:
    with pytest.raises(wire.WireError, match="NUL"):
        wire.encode_launch(_cfg(argv=("/bin/sh", "a\0b")), b"")


def test_conditions_are_read_off_the_path_at_run_time(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "f").write_text("")
    (tmp_path / "l").symlink_to(tmp_path / "d")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    seen = {name: [prims.holds(prims.Prim(prims.MOUNT, "", str(tmp_path / name), cond=c))
                   for c in (prims.ALWAYS, prims.EXISTS, prims.IS_DIR, prims.EXISTS_NOT_DIR)]
            for name in ("d", "f", "l", "dangling", "missing")}
    assert seen == {"d": [True, True, True, False], "f": [True, True, False, True], "l": [True, True, True, False],
                    "dangling": [True, True, False, True], "missing": [True, False, False, False]}


def _c_constants(source: str) -> dict[str, int]:
    """zygote.c's ``#define NAME NUMBER-EXPRESSION`` and ``enum { A = n, B, … }`` values."""
    out: dict[str, int] = {}
    for name, expr in re.findall(r"^#define (\w+) ([0-9x()<\sULL]+?)\s*(?:/\*.*)?$", source, re.M):
        out[name] = eval(expr.replace("ULL", ""), {})  # noqa: S307 - digits, shifts and parentheses only
    for body in re.findall(r"enum \{([^}]*)\}", source):
        value = -1
        for item in body.split(","):
            name, _, given = item.strip().partition(" = ")
            value = int(given) if given else value + 1
            out[name] = value
    return out


def test_the_c_zygote_s_constants_are_python_s() -> None:
    """zygote.c cannot import Python: every number (and comm name) the two sides share, read from
    the C source and compared with the Python definitions it mirrors."""
    from runtimes import syscalls
    from runtimes.container.launcher import native, zygote_server
    from runtimes.workloads import MARKER_FD

    source = native.SOURCE.read_text()
    c = _c_constants(source)
    assert {k: c[k] for k in ("STATUS_FD", "MOUNT_NS_FD", "MARKER_FD", "REQUEST_FDS", "MAX_REQUEST")} == {
        "STATUS_FD": init.STATUS_FD, "MOUNT_NS_FD": init.MOUNT_NS_FD, "MARKER_FD": MARKER_FD,
        "REQUEST_FDS": zygote_server.REQUEST_FDS, "MAX_REQUEST": zygote_server.MAX_REQUEST}
    assert c["CLONE_INTO_CGROUP_FLAG"] == syscalls.CLONE_INTO_CGROUP
    assert [c[f"P_{n}"] for n in ("MOUNT", "MKDIR", "SYMLINK", "MKNOD", "CREATE", "PIVOT")] == [
        prims.MOUNT, prims.MKDIR, prims.SYMLINK, prims.MKNOD, prims.CREATE, prims.PIVOT]
    assert [c[f"C_{n}"] for n in ("ALWAYS", "EXISTS", "IS_DIR", "EXISTS_NOT_DIR")] == [
        prims.ALWAYS, prims.EXISTS, prims.IS_DIR, prims.EXISTS_NOT_DIR]
    # the record sizes the C side insists on: what wire.py packs
    sizes = {int(n) for n in re.findall(r"len (?:!=|<) (\d+)", source)}
    # (an image's user: "<II" and a u32 per group; "no marker": an empty record)
    assert {struct.calcsize("<BBQIQ"), struct.calcsize("<QQIBBBBi"), struct.calcsize("<iqq"),
            struct.calcsize("<i"), struct.calcsize("<I"), struct.calcsize("<II"), 0} == sizes
    assert f'"{init.INIT_COMM}"' in source and f'"{zygote_server.ZYGOTE_COMM}"' in source
