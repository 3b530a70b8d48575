"""runtimes.syscalls: each wrapper against the real kernel, namespaced work in forked children."""

from __future__ import annotations

import errno
import json
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from runtimes import syscalls as sc


def in_child(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` in a forked child (whose namespace changes die with it); return its JSON result."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - reported through the pipe
        try:
            os.close(r)
            out = {"ok": fn()}
        except BaseException as e:  # noqa: BLE001
            out = {"error": f"{type(e).__name__}: {e}"}
        os.write(w, json.dumps(out).encode())
        os._exit(0)
    os.close(w)
    data = b""
    while chunk := os.read(r, 65536):
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    res = json.loads(data)
    assert "error" not in res, res["error"]
    return res["ok"]


def test_failures_are_oserrors_that_name_the_call() -> None:
    with pytest.raises(OSError, match=r"mount\(None, /nonexistent-isobench") as e:
        sc.mount(None, "/nonexistent-isobench", None, sc.MS_BIND)
    assert e.value.errno in (errno.ENOENT, errno.EPERM)
    assert os.strerror(e.value.errno) in str(e.value)
    with pytest.raises(OSError, match=r"umount2\(/nonexistent-isobench") as e:
        sc.umount2("/nonexistent-isobench")
    assert e.value.errno in (errno.ENOENT, errno.EPERM)
    with pytest.raises(OSError, match=r"pivot_root\(/nonexistent-isobench"):
        sc.pivot_root("/nonexistent-isobench", "/nonexistent-isobench")
    with pytest.raises(OSError, match=r"prctl\(57005") as e:
        sc.prctl(0xDEAD)
    assert e.value.errno == errno.EINVAL
    with pytest.raises(OSError, match=r"setns\(-1"):
        sc.setns(-1, 0)
    with pytest.raises(OSError, match=r"unshare\(0x1\)"):
        sc.unshare(0x1)  # CSIGNAL bits: not a namespace flag


def test_prctl_no_new_privs_and_name() -> None:
    def child() -> list[Any]:
        before = sc.prctl(sc.PR_GET_NO_NEW_PRIVS)
        sc.prctl(sc.PR_SET_NO_NEW_PRIVS, 1)
        sc.set_name("isobench-test-name-too-long")
        return [before, sc.prctl(sc.PR_GET_NO_NEW_PRIVS), Path("/proc/self/comm").read_text().strip()]

    assert in_child(child) == [0, 1, "isobench-test-n"]  # comm keeps 15 bytes
    assert sc.prctl(sc.PR_GET_NO_NEW_PRIVS) == 0  # the test process is untouched


def test_capget_reads_this_process() -> None:
    eff, perm, inh = sc.capget()
    status = {k: int(v.split()[0], 16) for k, v in
              (line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines()
               if line.startswith("Cap"))}
    assert (eff, perm, inh) == (status["CapEff"], status["CapPrm"], status["CapInh"])


@pytest.mark.privileged
def test_unshare_uts_and_sethostname_stay_in_the_child() -> None:
    host = socket.gethostname()

    def child() -> str:
        sc.unshare(sc.CLONE_NEWUTS)
        sc.sethostname("isobench-uts-test")
        return socket.gethostname()

    assert in_child(child) == "isobench-uts-test"
    assert socket.gethostname() == host


@pytest.mark.privileged
def test_setns_returns_to_the_original_namespace() -> None:
    host = socket.gethostname()

    def child() -> list[str]:
        fd = os.open("/proc/self/ns/uts", os.O_RDONLY)
        sc.unshare(sc.CLONE_NEWUTS)
        sc.sethostname("isobench-setns-test")
        inside = socket.gethostname()
        sc.setns(fd, sc.CLONE_NEWUTS)
        return [inside, socket.gethostname()]

    assert in_child(child) == ["isobench-setns-test", host]


@pytest.mark.privileged
def test_mount_umount2_in_a_private_mount_namespace(tmp_path: Path) -> None:

    def child() -> list[bool]:
        sc.unshare(sc.CLONE_NEWNS)
        sc.mount(None, "/", None, sc.MS_REC | sc.MS_PRIVATE)
        sc.mount("tmpfs", tmp_path, "tmpfs", 0, "mode=755")
        mounted = os.path.ismount(tmp_path)
        sc.umount2(tmp_path)
        return [mounted, os.path.ismount(tmp_path)]

    assert in_child(child) == [True, False]
    assert not os.path.ismount(tmp_path)


@pytest.mark.privileged
def test_pivot_root_makes_a_tmpfs_the_root(tmp_path: Path) -> None:

    def child() -> list[str]:
        sc.unshare(sc.CLONE_NEWNS)
        sc.mount(None, "/", None, sc.MS_REC | sc.MS_PRIVATE)
        sc.mount("tmpfs", tmp_path, "tmpfs", 0, "mode=755")
        (tmp_path / "only-this").write_text("x")
        os.chdir(tmp_path)
        sc.pivot_root(".", ".")
        sc.umount2(".", sc.MNT_DETACH)
        os.chdir("/")
        return sorted(os.listdir("/"))

    assert in_child(child) == ["only-this"]
    assert list(tmp_path.iterdir()) == []  # the tmpfs never existed out here


@pytest.mark.privileged
def test_bounding_set_drop_and_capset_take_away_mount() -> None:
    sys_admin = 21

    def child() -> list[Any]:
        sc.prctl(sc.PR_CAPBSET_DROP, sys_admin)
        eff, perm, _ = sc.capget()
        keep = eff & ~(1 << sys_admin)
        sc.capset(keep, keep, 0)
        after = sc.capget()
        try:
            sc.mount("tmpfs", "/mnt", "tmpfs")
            mount_errno = 0
        except OSError as e:
            mount_errno = e.errno or 0
        return [sc.prctl(sc.PR_CAPBSET_READ, sys_admin), after[0] >> sys_admin & 1, after[2], mount_errno]

    assert in_child(child) == [0, 0, 0, errno.EPERM]
