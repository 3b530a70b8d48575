"""Shared fixtures.

Tests that need root, namespaces, cgroups, libvirt or a guest kernel call
``require(condition, reason)``: on a laptop that skips with the reason; under
``CI=true`` it *fails*, because a silent skip in CI would hide a regression.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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


@pytest.fixture
def root_required() -> None:
    require(is_root(), "needs root (namespaces, cgroups)")


def isobench_cgroups() -> list[str]:
    found = []
    for dirpath, dirnames, _ in os.walk("/sys/fs/cgroup"):
        for d in dirnames:
            if PREFIX in d and "harness" not in d:
                found.append(os.path.join(dirpath, d))
    return found


def isobench_mounts() -> list[str]:
    return [line for line in Path("/proc/self/mountinfo").read_text().splitlines() if PREFIX in line]


@pytest.fixture
def no_leftovers():
    """Asserts that the test left no isobench cgroup or mount behind."""
    before_cg, before_mnt = set(isobench_cgroups()), set(isobench_mounts())
    yield
    assert set(isobench_cgroups()) - before_cg == set(), "cgroups left behind"
    assert set(isobench_mounts()) - before_mnt == set(), "mounts left behind"


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


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Under CI=true any skip fails the run: a skipped check is an unchecked regression."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter is not None else []
    if IN_CI and skipped:
        reporter.write_line(f"CI=true: {len(skipped)} test(s) skipped; a skip in CI counts as a failure:",
                            red=True, bold=True)
        for rep in skipped:
            reporter.write_line(f"  {rep.nodeid}: {rep.longrepr[-1] if isinstance(rep.longrepr, tuple) else ''}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
