"""Fixtures of the floor microbenchmarks: root, the rootfs, raw cgroup directories.

Each cgroup fixture yields directories named ``isobench-bench-<pid>-<n>`` below
our own cgroup (where ``Cgroup.create`` would put them) and removes whatever
is left at the end.  The host's cgroup layout is added to the benchmark JSON's
``machine_info``, so a floor is never read against the wrong host.
"""

from __future__ import annotations

import functools
import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from benchmarks.primitives import CgroupDirs
from runtimes import cgroups, rootfs
from runtimes.base import PREFIX
from tests.conftest import is_root, require

_names = itertools.count()


def pytest_benchmark_update_machine_info(config, machine_info) -> None:
    try:
        machine_info["isobench_cgroup"] = cgroups.describe()
    except OSError as e:
        machine_info["isobench_cgroup"] = {"error": str(e)}


@pytest.fixture
def root() -> None:
    require(is_root(), "needs root (namespaces, mounts, cgroups)")


@pytest.fixture(scope="session")
def rootfs_dir() -> Path:
    require(is_root(), "needs root (namespaces, mounts, cgroups)")
    require(os.path.exists("/bin/busybox"), "busybox-static not installed")
    return rootfs.build()


def _name() -> str:
    return f"{PREFIX}-bench-{os.getpid()}-{next(_names)}"


def _cgroup_dirs(make: Callable[[str], dict[str, Path]], missing: str) -> Iterator[CgroupDirs]:
    """Directories where a cgroup of that version would go, for the benchmark to create itself."""
    require(is_root(), "needs root (cgroups)")
    try:
        dirs = make(_name())
    except cgroups.CgroupError as e:
        pytest.skip(f"{missing}: {e}")
    d = CgroupDirs([str(p) for p in dict.fromkeys(dirs.values())])
    yield d
    d.rmdir()


@pytest.fixture
def cgroup_v1_dirs() -> Iterator[CgroupDirs]:
    yield from _cgroup_dirs(functools.partial(cgroups.dirs_for, v=1), "no cgroup v1 hierarchies")


@pytest.fixture
def cgroup_v2_dirs() -> Iterator[CgroupDirs]:
    yield from _cgroup_dirs(functools.partial(cgroups.dirs_for, v=2), "no cgroup2 hierarchy")
