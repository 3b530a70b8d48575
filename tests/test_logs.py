"""A launch's log: made before ``t_launch``, removed at the instance's cleanup when nothing was
written to it (most workloads say nothing; a soak's 10,000 launches left as many empty files),
kept when something was."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import runtimes
from runtimes.base import PREFIX, LaunchSpec
from runtimes.stdio import Stdio, close_log, create_log
from runtimes.workloads import BUSYBOX, Workload
from tests.conftest import require
from tests.test_timing import PROCESS_BACKENDS


def test_an_empty_log_is_removed_when_closed_and_a_written_one_kept(tmp_path: Path) -> None:
    empty, said = tmp_path / "logs" / "empty.log", tmp_path / "logs" / "said.log"
    assert close_log(create_log(empty), empty) is False and not empty.exists()
    log = create_log(said)
    os.write(log.fileno(), b"hello\n")  # as the copier writes: to the fd
    assert close_log(log, said) is True and said.read_bytes() == b"hello\n"
    buffered = create_log(said)
    buffered.write(b"x")  # as a guest's console is written: flushed by close_log before it looks
    assert close_log(buffered, said) is True and said.read_bytes() == b"x"


def test_only_the_log_itself_is_removed(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    log = create_log(path)
    (tmp_path / "other").write_bytes(b"")
    os.replace(tmp_path / "other", path)  # another (empty) file at the log's path meanwhile
    assert close_log(log, path) is True and path.exists()
    log = create_log(path)
    log.close()  # closed already: nothing known of it, nothing removed
    assert close_log(log, path) is True and path.exists()


def test_a_stdio_without_output_has_no_log_once_closed(tmp_path: Path) -> None:
    quiet, said = Stdio.to_log(tmp_path / "quiet.log"), Stdio.to_log(tmp_path / "said.log")
    quiet.spawned()
    os.write(said.child[1], b"hello\n")
    said.spawned()
    for stdio in (quiet, said):
        assert stdio.drain(5)
        stdio.close()
    assert quiet.path is None and not (tmp_path / "quiet.log").exists()
    assert said.path == str(tmp_path / "said.log") and (tmp_path / "said.log").read_bytes() == b"hello\n"


@pytest.mark.privileged
@pytest.mark.parametrize("name", PROCESS_BACKENDS)
def test_a_silent_launch_leaves_no_log_and_a_talking_one_keeps_it(name: str, run_id: str, tmp_path: Path,
                                                                  no_leftovers) -> None:
    b = runtimes.get(name)
    require((why := b.available()) is None, f"{name}: {why}")
    insts = []
    try:
        for n, script in enumerate(("exit 0", "echo said; echo also >&2")):
            spec = LaunchSpec(Workload("noop"), run_id, f"{PREFIX}-{run_id}-{n}", timeout_s=30,
                              log_dir=str(tmp_path), extra={"argv": [BUSYBOX, "sh", "-c", script]})
            with b.launch(spec) as inst:
                made = inst.log_path
                assert made is not None and Path(made).is_file()  # made before the launch
                assert inst.wait(30) == 0
            insts.append((inst, made))
    finally:
        b.close()
    (silent, made), (talking, kept) = insts
    assert silent.log_path is None and not Path(made).exists()
    assert talking.log_path == kept and sorted(Path(kept).read_text().split()) == ["also", "said"]  # (either order)
    assert [p.name for p in tmp_path.iterdir()] == [Path(kept).name]
