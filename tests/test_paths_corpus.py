"""Every command's paths and names as hostile input (issue 25 item 3): one line, exit 2, nothing made.

``CORPUS`` holds, for each command of ``harness.cli.COMMANDS``, arguments that name a file, a
directory, a run id, an image or a kernel wrongly: a FIFO or ``/dev/zero`` where a file is read
(either would hang the command), a file or ``/proc`` where a directory is written, a path where a
name belongs, a directory that is not a report where a report would be rebuilt, a text file
where a kernel image belongs.  Each case runs the real command line in this process (a hang is
an alarm, a traceback an escaped exception) from a sandbox directory with its own cache, and
must end in exactly one line on stderr, nothing on stdout, exit status 2 -- and leave the
sandbox, the cache, the owners' records, cgroups, mounts and network namespaces as they were.

A command added to ``COMMANDS`` without entries here fails ``test_every_command_has_a_corpus``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import cli
from tests.conftest import isobench_cgroups, isobench_mounts

REPO = Path(__file__).resolve().parents[1]
SCENARIO = str(REPO / "scenarios" / "startup.toml")
RUN = "{tmp}/run"  # a copy of a real stored run
#: a process tag every object a case might wrongly create would carry (its run id)
TAG = f"corpus{os.getpid()}"

#: command -> hostile argument lists ("{tmp}" is the sandbox; see ``sandbox`` for what is there)
CORPUS: dict[str, list[list[str]]] = {
    "run": [
        ["{tmp}/missing.toml"], ["{tmp}/adir"], ["{tmp}/afifo"], ["/dev/zero"], ["{tmp}/big.toml"],
        [SCENARIO, "--results", "{tmp}/afile"], [SCENARIO, "--results", "{tmp}/afile/sub"],
        [SCENARIO, "--results", "/proc/isobench-corpus"], [SCENARIO, "--results", "/sys/isobench-corpus"],
        [SCENARIO, "--run-id", "../escape"], [SCENARIO, "--run-id", "{tmp}/abs"], [SCENARIO, "--run-id", ""],
        [SCENARIO, "--run-id", ".hidden"], [SCENARIO, "--run-id", "a" * 65],
        [SCENARIO, "--results", "{tmp}/results", "--run-id", "taken"],
        ["{tmp}/seccomp-fifo.toml"], ["{tmp}/seccomp-dir.toml"], ["{tmp}/seccomp-missing.toml"],
        [SCENARIO, "--backends", ",,,"], [SCENARIO, "--backends", "../container"],
    ],
    # no argument of doctor names a path: an unknown option is the whole of its hostile input
    "doctor": [["--results", "{tmp}/x"], ["{tmp}/adir"]],
    "cleanup": [["--run-id", "../escape"], ["--run-id", "/etc"], ["--run-id", ""], ["--run-id", "a/b"],
                ["--run-id", "-x"], ["--run-id", "a" * 65]],
    "exec": [["--backend", "container", "--seccomp", "{tmp}/afifo", "--", "true"],
             ["--backend", "container", "--seccomp", "/dev/zero", "--", "true"],
             ["--backend", "container", "--seccomp", "{tmp}/adir", "--", "true"],
             ["--backend", "container", "--seccomp", "{tmp}/missing.json", "--", "true"],
             ["--backend", "../bare", "--", "true"], ["--backend", "bare"]],
    "report": [["{tmp}/missing"], ["{tmp}/afile"], ["{tmp}/adir"], ["{tmp}/afifo"], ["{tmp}/fifo-manifest"],
               ["{tmp}/list-manifest"], ["{tmp}/no-run-id"], ["{tmp}/bad-samples"],
               [RUN, "--out", "{tmp}/afile"], [RUN, "--out", "/proc/isobench-corpus"],
               [RUN, "--out", "{tmp}/notes"], [RUN, "--out", "/"]],
    "compare": [["{tmp}/missing", RUN], [RUN, "{tmp}/afifo"], [RUN, RUN, "--markdown", "{tmp}/adir"],
                [RUN, RUN, "--markdown", "{tmp}/afile/x.md"], [RUN, RUN, "--out", "{tmp}/afile"],
                [RUN, RUN, "--noise", "{tmp}/afifo"], [RUN, RUN, "--noise", "/dev/zero"],
                [RUN, RUN, "--calibrate", "--noise", "{tmp}/adir"]],
    "validate": [["{tmp}/missing"], ["{tmp}/afifo"], [RUN, "--baseline", "{tmp}/afifo"],
                 [RUN, "--baseline", "/dev/zero"], [RUN, "--baseline", "{tmp}/adir"],
                 [RUN, "--junit", "{tmp}/adir"], [RUN, "--out", "{tmp}/afile"],
                 [RUN, "--update-baseline", "--baseline", "{tmp}/adir"]],
    "matrix": [["{tmp}/afifo"], ["/dev/zero"], [SCENARIO, "--kernels", ""], [SCENARIO, "--kernels", "/etc/passwd"],
               [SCENARIO, "--kernels", "{tmp}/afifo"], [SCENARIO, "--kernels", "6.1;true"],
               [SCENARIO, "--kernels", "../6.1"], [SCENARIO, "--results", "{tmp}/afile"],
               [SCENARIO, "--backends", ","]],
    "floor": [["{tmp}/missing.json"], ["{tmp}/afifo"], ["/dev/zero"], ["{tmp}/afile"], ["{tmp}/adir"],
              ["{tmp}/bench.json"]],
    "image": [["import", "{tmp}/missing"], ["import", "{tmp}/afifo"], ["import", "/dev/zero"],
              ["import", "{tmp}/adir"], ["import", "{tmp}/afile"], ["import", "{tmp}/adir", "--name", "../x"],
              ["import", "{tmp}/adir", "--name", "UPPER"], ["import", "{tmp}/adir", "--max-layer-mib", "-1"],
              ["inspect", "../../etc"], ["inspect", "sha256:"], ["rm", ""], ["rm", "/etc/passwd"]],
    "soak": [["{tmp}/missing.toml"], ["{tmp}/afifo"], [SCENARIO, "--results", "{tmp}/afile"],
             [SCENARIO, "--run-id", "../escape"], [SCENARIO, "--results", "{tmp}/results", "--run-id", "taken"],
             ["{tmp}/afifo", "--scale", "0.5"], [SCENARIO, "--scale", "0"], [SCENARIO, "--every", "0"],
             [SCENARIO, "--backends", ","]],
    "fleet": [["run", "{tmp}/missing.ini", SCENARIO], ["run", "/dev/zero", SCENARIO], ["run", "{tmp}/afifo", SCENARIO],
              ["run", "{tmp}/adir", SCENARIO], ["run", "{tmp}/inventory.ini", "{tmp}/afifo"],
              ["run", "{tmp}/inventory.ini", SCENARIO, "--results", "{tmp}/afile"],
              ["run", "{tmp}/inventory.ini", SCENARIO, "--resume", "../escape"],
              ["run", "{tmp}/inventory.ini", "--resume", "/etc"],
              ["lab", "--inventory", "{tmp}/afile/x", "--", "true"], ["lab", "--inventory", "{tmp}/adir", "--", "true"]],
    # the columnar store and the history (issue 27): a run is read, never written, by a failing case
    "results": [["convert", "{tmp}/missing"], ["convert", "{tmp}/afile"], ["convert", "{tmp}/afifo"],
                ["convert", "{tmp}/adir"], ["convert", "{tmp}/fifo-manifest"], ["convert", "{tmp}/bad-samples"],
                ["info", "{tmp}/afifo"], ["info", "/dev/zero"]],
    "history": [["--history", "{tmp}/afile", "add", RUN], ["--history", "/proc/isobench-corpus", "add", RUN],
                ["--history", "{tmp}/results", "add", "{tmp}/afifo"],
                ["--history", "{tmp}/results", "add", "{tmp}/bad-samples"],
                ["--history", "{tmp}/afifo", "report"], ["--history", "{tmp}/adir", "report"],
                ["--history", "{tmp}/adir", "report", "--out", "{tmp}/afile"],
                ["--history", "{tmp}/afifo", "compact"]],
    # the stats helper's `isobench ab`
    "ab": [["{tmp}/afifo"], ["--reuse", "{tmp}/afile"], [SCENARIO, "--runs", "2", "--results", "{tmp}/afile"],
           [SCENARIO, "--results", "{tmp}/afile/sub"], [SCENARIO, "--results", "/proc/isobench-corpus"],
           [SCENARIO, "--results", "/sys/isobench-corpus"], [SCENARIO, "--out", "{tmp}/afile"],
           ["--reuse", "{tmp}/run", "--out", "/proc/isobench-corpus"]],
}

_SCENARIO_WITH = """[scenario]
backends = ["container"]
[backend.container]
seccomp = "{path}"
[[experiment]]
measurement = "startup"
"""


def _make_sandbox(tmp: Path) -> None:
    """What the corpus refers to: files of every kind, broken run directories, a real run."""
    (tmp / "afile").write_text("not a directory\n")
    (tmp / "inventory.ini").write_text("local ansible_connection=local\n")
    (tmp / "adir").mkdir()
    (tmp / "notes").mkdir()
    (tmp / "notes" / "keep.txt").write_text("a directory that is not a report\n")
    os.mkfifo(tmp / "afifo")
    (tmp / "big.toml").write_bytes(b"#" * ((64 << 20) + 1))
    shutil.copytree(REPO / "tests" / "data" / "runs" / "dev-host-default", tmp / "run")
    (tmp / "results" / "taken").mkdir(parents=True)
    for name, manifest in (("fifo-manifest", None), ("list-manifest", "[]"),
                           ("no-run-id", '{"schema": "isobench/run", "status": "completed"}'),
                           ("bad-samples", '{"schema": "isobench/run", "run_id": "x", "status": "completed"}')):
        (tmp / name).mkdir()
        if manifest is None:
            os.mkfifo(tmp / name / "manifest.json")
        else:
            (tmp / name / "manifest.json").write_text(manifest)
    (tmp / "bad-samples" / "samples.jsonl").write_text('[1]\n{"backend": 3}\n')
    (tmp / "bench.json").write_text('{"benchmarks": [1, {"extra_info": {"primitive": "x"}}]}')
    for kind, path in (("fifo", tmp / "afifo"), ("dir", tmp / "adir"), ("missing", tmp / "missing.json")):
        (tmp / f"seccomp-{kind}.toml").write_text(_SCENARIO_WITH.format(path=path))
    (tmp / "cache").mkdir(mode=0o755)


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every path below ``root`` with its type and size (what a case may not change)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            out[os.path.relpath(p, root)] = (st.st_mode, 0 if os.path.isdir(p) else st.st_size)
    return out


def _kernel_objects() -> set[str]:
    """isobench cgroups, mounts, network namespaces and owner records that name this process."""
    from runtimes.owners import OWNERS

    netns = {str(p) for p in Path("/run/netns").glob("*")} if Path("/run/netns").is_dir() else set()
    records = {str(p) for p in OWNERS.glob("*/*")} if OWNERS.is_dir() else set()
    found = set(isobench_cgroups()) | set(isobench_mounts()) | netns | records
    return {f for f in found if TAG in f or f".{os.getpid()}." in f or f"/{os.getpid()}." in f}


@contextlib.contextmanager
def _alarm(seconds: int) -> Iterator[None]:
    """A hang (a FIFO read, a boot) becomes a failure instead of a stuck suite."""
    def ring(signum: int, frame: object) -> None:
        raise TimeoutError(f"the command did not end within {seconds} s")

    old = signal.signal(signal.SIGALRM, ring)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("corpus")
    _make_sandbox(tmp)
    return tmp


def _cases() -> list[tuple[str, list[str]]]:
    return [(command, argv) for command, cases in CORPUS.items() if command in cli.COMMANDS for argv in cases]


def test_every_command_has_a_corpus() -> None:
    missing = sorted(set(cli.COMMANDS) - set(CORPUS))
    assert not missing, f"commands without hostile-path cases in tests/test_paths_corpus.py: {missing}"
    assert all(len(CORPUS[c]) >= 2 for c in cli.COMMANDS)


@pytest.mark.privileged
@pytest.mark.parametrize(("command", "argv"), _cases(), ids=lambda v: v if isinstance(v, str) else " ".join(v)[:60])
def test_a_hostile_path_is_one_line_exit_2_and_nothing_made(command: str, argv: list[str], sandbox: Path,
                                                             capsys: pytest.CaptureFixture[str],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(sandbox)
    monkeypatch.setenv("ISOBENCH_CACHE", str(sandbox / "cache"))
    args = [command, *(a.replace("{tmp}", str(sandbox)) for a in argv)]
    if command in ("run", "soak") and "--run-id" not in args:  # anything it wrongly made would carry TAG
        args += ["--run-id", TAG]
    before_tree, before_objects = _tree(sandbox), _kernel_objects()
    with _alarm(30):
        try:
            status = cli.main(args)
        except SystemExit as e:  # argparse
            status = e.code
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert status == 2, f"exit {status}: {err}"
    assert len(lines) == 1 and lines[0].startswith("isobench"), f"not one line: {err!r}"
    assert out == "", f"stdout: {out!r}"
    assert _tree(sandbox) == before_tree, "the command changed the sandbox"
    assert _kernel_objects() - before_objects == set(), "the command left kernel objects or owner records"
