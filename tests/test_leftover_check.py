"""The leftover check every privileged test leans on (``tests.conftest.leftover_check``): it
must fail on what the test itself leaves, and, off CI only, spare what another live harness holds.

The objects are real (cgroups below our own, a tmpfs mount in the test's directory); "another
harness" is a process this test starts and disowns (it is not our descendant), recorded as a
run's owner the way ``runtimes.owners.claim`` records one.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtimes import owners
from runtimes import syscalls as sc
from runtimes.base import PREFIX
from runtimes.cgroups import Cgroup
from runtimes.wait import wait_until
from tests.conftest import leftover_check

pytestmark = pytest.mark.privileged


@pytest.fixture
def stranger(tmp_path: Path, monkeypatch) -> Iterator[owners.Owner]:
    """A live process that is not ours (its parent exited: it is no descendant of pytest),
    recorded as the owner of run ``stranger`` in owner records of this test's own."""
    monkeypatch.setattr(owners, "OWNERS", tmp_path / "owners")
    out = subprocess.run(["sh", "-c", "sleep 120 >/dev/null 2>&1 & echo $!"], capture_output=True,
                         text=True, check=True).stdout
    owner = owners.Owner(int(out), owners.proc_start(int(out)))
    assert owner.alive()
    (tmp_path / "owners" / f"stranger{os.getpid()}").mkdir(parents=True)
    (tmp_path / "owners" / f"stranger{os.getpid()}" / owner.tag()).touch()
    try:
        yield owner
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(owner.pid, signal.SIGKILL)


@contextlib.contextmanager
def cgroup(name: str) -> Iterator[None]:
    cg = Cgroup.create(name)
    try:
        yield
    finally:
        cg.remove()


@contextlib.contextmanager
def mount(where: Path) -> Iterator[None]:
    where.mkdir()
    sc.mount("tmpfs", str(where), "tmpfs", 0, "size=64k")
    try:
        yield
    finally:
        sc.umount2(str(where), sc.MNT_DETACH)


# Each object is made inside the checked body and removed after the check (the ExitStack is
# outside it), so the check sees it: ``with ExitStack() as left, leftover_check(): left.enter_context(...)``.


def test_a_cgroup_the_test_leaves_fails_it(run_id: str) -> None:
    owners.claim(run_id)  # as a backend does: the test's own run has a live owner, this process
    try:
        with contextlib.ExitStack() as left, pytest.raises(AssertionError, match="cgroups left behind"):
            with leftover_check(ci=False, grace_s=0):
                left.enter_context(cgroup(f"{PREFIX}-{run_id}-0"))
    finally:
        owners.release(run_id)


def test_a_mount_the_test_leaves_fails_it(run_id: str, tmp_path: Path) -> None:
    with contextlib.ExitStack() as left, pytest.raises(AssertionError, match="mounts left behind"):
        with leftover_check(ci=False, grace_s=0):
            left.enter_context(mount(tmp_path / f"{PREFIX}-{run_id}-m"))


def test_a_dead_harness_s_objects_count(tmp_path: Path, monkeypatch) -> None:
    """A run whose owner is gone (a SIGKILLed harness of the test's) is the test's leftover."""
    monkeypatch.setattr(owners, "OWNERS", tmp_path / "owners")
    run = f"dead{os.getpid()}"
    (tmp_path / "owners" / run).mkdir(parents=True)
    (tmp_path / "owners" / run / owners.Owner(os.getpid(), "1").tag()).touch()  # the pid, since reused
    with contextlib.ExitStack() as left, pytest.raises(AssertionError, match="cgroups left behind"):
        with leftover_check(ci=False, grace_s=0):
            left.enter_context(cgroup(f"{PREFIX}-{run}-0"))


def test_what_a_process_the_test_started_holds_is_the_tests(tmp_path: Path) -> None:
    """A harness the test runs as a child, alive at the check, holds the test's leftovers."""
    child = subprocess.Popen(["sleep", "120"])
    try:
        tag = owners.Owner(child.pid, owners.proc_start(child.pid)).tag()
        with contextlib.ExitStack() as left, pytest.raises(AssertionError, match="cgroups left behind"):
            with leftover_check(ci=False, grace_s=0):
                left.enter_context(cgroup(f"{PREFIX}-devices-{tag}-container-1"))
    finally:
        child.kill()
        child.wait()


def test_another_live_harness_s_objects_are_not_the_tests(stranger: owners.Owner, tmp_path: Path) -> None:
    run = f"{PREFIX}-stranger{os.getpid()}"
    with contextlib.ExitStack() as left:
        with leftover_check(ci=False, grace_s=0):  # passes: all of it is the stranger's
            left.enter_context(cgroup(f"{run}-0"))
            left.enter_context(cgroup(f"{PREFIX}-devices-{stranger.tag()}-container-1"))
            left.enter_context(mount(tmp_path / f"{run}-m"))


def test_under_ci_another_harness_s_objects_count(stranger: owners.Owner) -> None:
    with contextlib.ExitStack() as left, pytest.raises(AssertionError, match="cgroups left behind"):
        with leftover_check(ci=True):  # CI runs the suite alone: every new object counts
            left.enter_context(cgroup(f"{PREFIX}-stranger{os.getpid()}-0"))


def test_once_the_other_harness_is_gone_its_objects_count(stranger: owners.Owner) -> None:
    with contextlib.ExitStack() as left, pytest.raises(AssertionError, match="cgroups left behind"):
        with leftover_check(ci=False, grace_s=0):
            left.enter_context(cgroup(f"{PREFIX}-devices-{stranger.tag()}-container-2"))
            os.kill(stranger.pid, signal.SIGKILL)
            assert wait_until(lambda: not stranger.alive(), 10), "the owner did not go"
