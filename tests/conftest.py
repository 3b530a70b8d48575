"""Shared fixtures, and the one gate of the tests that need the host.

A test says what it needs with a marker (``privileged``: root, namespaces,
cgroups; ``vm``: that plus a guest kernel and QEMU; ``libvirt``: a libvirtd that
answers).  ``pytest_runtest_setup`` checks the markers' requirements once per
session: unmet, the test is skipped with the reason on a laptop, and *fails*
under ``CI=true``, because a silent skip in CI would hide a regression.
``require(condition, reason)`` does the same for the rarer, test-specific needs.
``nox -s unit`` runs the tests without these markers (no root needed).
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from runtimes import owners
from runtimes.base import PREFIX

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(condition: bool, reason: str) -> None:
    if condition:
        return
    if IN_CI:
        pytest.fail(f"CI=true and a requirement is missing: {reason}", pytrace=False)
    pytest.skip(reason)


def is_root() -> bool:
    return os.geteuid() == 0


def _root() -> str | None:
    return None if is_root() else "needs root (namespaces, cgroups)"


def _guest() -> str | None:
    from runtimes.vm import host

    if not is_root():
        return "needs root (guests)"
    if host.find_kernel() is None:
        return "no guest kernel in /boot (apt-get install linux-image-amd64)"
    if shutil.which("qemu-system-x86_64") is None:
        return "qemu-system-x86 not installed"
    return None


def _libvirt() -> str | None:
    try:
        from runtimes.vm import host
    except ImportError as e:  # pragma: no cover - the package itself imports no libvirt
        return f"libvirt-python missing: {e}"
    problem = host.libvirt_status()
    return f"libvirt: {problem}" if problem else None


#: marker -> what it needs: a check returning None when met, else the reason
REQUIREMENTS: dict[str, Callable[[], str | None]] = {
    "privileged": _root,
    "vm": _guest,
    "libvirt": _libvirt,
}


@functools.cache
def unmet(marker: str) -> str | None:
    """Why ``marker``'s requirement is not met on this host (None: it is); asked once a session."""
    return REQUIREMENTS[marker]()


def pytest_runtest_setup(item: pytest.Item) -> None:
    """The gate: each requirement marker of the test must be met (skip, or fail under CI)."""
    for marker in REQUIREMENTS:
        if item.get_closest_marker(marker) is not None:
            reason = unmet(marker)
            if reason is not None:
                require(False, reason)


def isobench_cgroups() -> list[str]:
    found = []
    for dirpath, dirnames, _ in os.walk("/sys/fs/cgroup"):
        for d in dirnames:
            if PREFIX in d and "harness" not in d:
                found.append(os.path.join(dirpath, d))
    return found


def isobench_mounts() -> list[str]:
    return [line for line in Path("/proc/self/mountinfo").read_text().splitlines() if PREFIX in line]


#: run ids other isobench processes put in names: a test's (``t<pid>...``) or a run's (date-time)
_FOREIGN = re.compile(r"isobench-(t(\d+)|\d{8}-\d{6})")
#: an isobench object's name, as it appears in a cgroup path or a mountinfo line
_NAME = re.compile(rf"{PREFIX}-[A-Za-z0-9._-]+")


def _family() -> set[int]:
    """This process and its descendants: what they hold is the test's own."""
    me = psutil.Process()
    return {me.pid} | {p.pid for p in me.children(recursive=True)}


def _foreign(name: str, live: owners.Live, family: set[int]) -> bool:
    """Whether the object called ``name`` is another process's: named after another test's or
    a dated run, or held by a live harness (its run's owner, or the process its name carries:
    ``isobench-devices-<pid>.<start>-…``) that is neither this process nor one it started."""
    if m := _FOREIGN.match(name):
        return not (m.group(2) or "").startswith(str(os.getpid()))
    holders = live.holders(name)
    return bool(holders) and not any(h.pid in family for h in holders)


def _others(entries: set[str], ci: bool = IN_CI) -> set[str]:
    """Entries (cgroup paths, mountinfo lines) that name another process's object (a shared
    machine: other people run isobench too).  Only off CI: CI runs the suite alone, and there
    every new entry counts."""
    if ci or not entries:
        return set()
    live, family = owners.live(), _family()
    return {e for e in entries if any(_foreign(n, live, family) for n in _NAME.findall(e))}


@contextlib.contextmanager
def leftover_check(*, ci: bool = IN_CI, grace_s: float | None = None) -> Iterator[None]:
    """Asserts that the body left no isobench cgroup or mount behind (what appeared meanwhile and
    is gone after ``grace_s`` -- 5 s off CI, none under CI -- or is another process's, is not ours)."""
    before_cg, before_mnt = set(isobench_cgroups()), set(isobench_mounts())
    yield
    # what is new right after the body, and still there after the grace period
    cg = set(isobench_cgroups()) - before_cg
    mnt = set(isobench_mounts()) - before_mnt
    cg, mnt = cg - _others(cg, ci), mnt - _others(mnt, ci)
    deadline = time.monotonic() + ((0 if ci else 5.0) if grace_s is None else grace_s)
    while (cg or mnt) and time.monotonic() < deadline:
        time.sleep(0.2)
        cg &= set(isobench_cgroups())
        mnt &= set(isobench_mounts())
    assert cg == set(), "cgroups left behind"
    assert mnt == set(), "mounts left behind"


@pytest.fixture
def no_leftovers():
    """Asserts that the test left no isobench cgroup or mount behind (``leftover_check``)."""
    with leftover_check():
        yield


@pytest.fixture
def run_id(request) -> str:
    """A short run id unique to the test, usable in instance names."""
    return f"t{os.getpid()}{abs(hash(request.node.nodeid)) % 10000}"


def pytest_sessionstart(session: pytest.Session) -> None:
    """On cgroup v2, delegate controllers while pytest is still alone in its cgroup (its
    subprocess tests would otherwise share the cgroup and block the delegation)."""
    import contextlib

    from runtimes import cgroups

    with contextlib.suppress(cgroups.CgroupError, OSError):
        cgroups.prepare()


def _named_after_me() -> list[str]:
    """isobench cgroups named after this pytest process (a backend made in-process and never
    closed, such as a shared v1 devices cgroup): the per-test checks spare them while pytest
    lives, and they would outlive it -- the next run on the host finds them as a dead harness's."""
    tag = owners.me().tag()
    return sorted(str(d) for d in isobench_cgroups() if tag in str(d))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Under CI=true any skip fails the run: a skipped check is an unchecked regression.  Any
    cgroup this process made and left fails it too (and is removed)."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if (mine := _named_after_me()) and reporter is not None:
        from runtimes import cgroups

        reporter.write_line(f"cgroups named after this pytest process left at the end: {mine}", red=True, bold=True)
        for d in sorted(mine, key=lambda d: -d.count("/")):  # deepest first
            if os.path.isdir(d):
                cgroups.remove_dir(Path(d))
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    skipped = reporter.stats.get("skipped", []) if reporter is not None else []
    if IN_CI and skipped:
        reporter.write_line(f"CI=true: {len(skipped)} test(s) skipped; a skip in CI counts as a failure:",
                            red=True, bold=True)
        for rep in skipped:
            reporter.write_line(f"  {rep.nodeid}: {rep.longrepr[-1] if isinstance(rep.longrepr, tuple) else ''}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
