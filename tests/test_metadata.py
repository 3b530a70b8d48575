"""Host metadata: every run records where its numbers come from."""

from __future__ import annotations

import os
import subprocess

from harness import metadata


def test_collect_records_the_environment() -> None:
    m = metadata.collect()
    assert m["kernel"] == os.uname().release
    assert m["cores"] == os.cpu_count()
    assert m["cgroup"]["version"] in (1, 2)
    assert "accelerator" in m and "kvm_device" in m
    assert "isobench" in m["packages"]


def test_commit_is_recorded_in_a_checkout() -> None:
    here = os.path.dirname(os.path.dirname(os.path.abspath(metadata.__file__)))
    head = subprocess.run(["git", "-C", here, "rev-parse", "HEAD"], capture_output=True, text=True)
    m = metadata.collect()
    if head.returncode == 0:  # a git checkout (CI's clean clone is one)
        assert m["commit"] == head.stdout.strip()
        assert isinstance(m["dirty"], bool)
    else:
        assert "commit" not in m


def test_a_command_with_empty_output_is_not_an_error() -> None:
    assert metadata._cmd("true") == ""
    assert metadata._cmd("definitely-not-a-command-isobench") is None
