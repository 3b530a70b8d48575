"""Running an image on the process backends: the overlay root, readiness by the app's answer,
the image's user/env/workdir, stop, and nothing left behind (real namespaces, mounts, cgroups)."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

import runtimes
from runtimes import owners
from runtimes.base import Backend, BackendError, LaunchSpec, Limits
from runtimes.image import rundir
from runtimes.image.model import Image
from runtimes.image.workload import ImageWorkload
from runtimes.workloads import Ready
from tests import imagekit

pytestmark = pytest.mark.privileged
BACKENDS = ("bare", "unshare", "container", "oci:runc", "oci:crun")


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Image:
    return imagekit.make(tmp_path_factory.mktemp("image"))


@pytest.fixture
def backends(no_leftovers) -> Iterator[dict[str, Backend]]:
    """The backends, closed before ``no_leftovers`` looks (their trees and devices cgroup go with them)."""
    opened = {name: runtimes.get(name) for name in BACKENDS}
    yield opened
    for b in opened.values():
        b.close()


def _spec(run_id: str, n: int, wl: ImageWorkload, tmp_path: Path, limits: Limits = Limits(), **extra) -> LaunchSpec:
    # one instance name per launch (the OCI runtimes refuse a name still in their state)
    return LaunchSpec(wl, run_id, f"isobench-{run_id}-{n}", limits=limits, timeout_s=10, log_dir=str(tmp_path),
                      extra=extra)


def _snapshot(image: Image) -> set[tuple[str, int, int]]:
    return {(str(p), p.lstat().st_mode, p.lstat().st_mtime_ns) for layer in image.layers for p in layer.rglob("*")}


@pytest.mark.parametrize(("backend", "extra"), [("container", {"zygote": "native"}),
                                              ("container", {"zygote": "python"}), ("oci:runc", {}), ("oci:crun", {})])
def test_the_container_root_is_the_image_layers_under_its_own_upper(image: Image, backends, run_id: str,
                                                                    tmp_path: Path, backend: str, extra) -> None:
    before = _snapshot(image)
    wl = ImageWorkload("web", image, ready=Ready("http", port=imagekit.PORT, path="/index.html"), stop="KILL")
    inst = backends[backend].launch(_spec(run_id, 0, wl, tmp_path, **extra))
    with inst:
        inst.wait_ready(10)
        upper = inst.upper
        assert upper is not None and upper.dir.is_dir() and f"isobench-{run_id}" in str(upper.dir)
        app = [p for p in inst.processes() if p != inst.proc.pid] if backend.startswith("oci") else [inst.proc.pid]
        root = next(line.split() for line in Path(f"/proc/{app[0]}/mountinfo").read_text().splitlines()
                    if line.split()[4] == "/")
        fstype = root[root.index("-") + 1]
        options = dict(o.partition("=")[::2] for o in root[-1].split(","))
        assert fstype == "overlay"
        assert {"nosuid", "nodev"} <= set(root[5].split(","))  # crun: the bundle binds the root again with them
        assert options["lowerdir"].split(":") == [str(p) for p in reversed(image.layers)]
        assert options["upperdir"] == str(upper.upper) and options["workdir"] == str(upper.work)
        assert "rootfs" in inst.times.phases  # the upper is made inside the launch
        assert not any(str(upper.root) in line for line in Path("/proc/self/mountinfo").read_text().splitlines())
    assert not upper.dir.exists(), "the instance's upper outlived it"
    assert _snapshot(image) == before, "a layer was written to"


def _run(backend: Backend, spec: LaunchSpec) -> str:
    """Launch, wait for ready, stop; the instance's log."""
    inst = backend.launch(spec)
    with inst:
        inst.wait_ready(10)
        inst.stop()
        inst.wait(10)
    return Path(inst.log_path or "").read_text()


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_readiness_kind_is_the_apps_own_answer(image: Image, backends, run_id: str, tmp_path: Path,
                                                     backend: str) -> None:
    b = backends[backend]
    nc = ("/bin/busybox", "nc", "-ll", "-p", "6379", "-e", "/bin/busybox", "true")
    kinds = [
        ImageWorkload("web", image, ready=Ready("http", port=imagekit.PORT, path="/index.html"), stop="KILL"),
        ImageWorkload("tcp", image, command=nc, ready=Ready("tcp", port=6379), stop="KILL"),
        ImageWorkload("log", image, command=("/app/run.sh", "/bin/busybox", "sleep", "30"),
                      ready=Ready("log", pattern="says hel+o"), stop="KILL"),
        ImageWorkload("exit", image, command=("/bin/busybox", "true")),
    ]
    for n, wl in enumerate(kinds):
        inst = b.launch(_spec(run_id, n, wl, tmp_path))
        with inst:
            t = inst.wait_ready(10)
            assert inst.times.t_launch is not None and t > inst.times.t_launch
            if wl.ready.kind == "exit":
                assert t == inst.times.t_exit and inst.wait(1) == 0
        if wl.ready.kind == "log":
            assert "app says hello" in Path(inst.log_path or "").read_text()  # the tee keeps the log whole


@pytest.mark.parametrize("backend", [*BACKENDS, "container:python"])
def test_the_image_user_env_and_workdir_are_the_same_everywhere(image: Image, run_id: str, tmp_path: Path,
                                                               backend: str, no_leftovers) -> None:
    script = "/bin/busybox id -u; /bin/busybox id -g; /bin/busybox id -G; /bin/busybox pwd; echo $GREETING $EXTRA"
    wl = ImageWorkload("who", image, command=("/bin/sh", "-c", script), workdir="/www", user="app",
                       env={"EXTRA": "x"})
    with runtimes.get(backend) as b:
        out = _run(b, _spec(run_id, 0, wl, tmp_path)).split("\n")
    groups = {"1000"} if backend in ("bare", "unshare") else {"1000", "2000"}  # unshare(1) drops supplementary
    assert out[:2] == ["1000", "1000"] and set(out[2].split()) == groups and out[3:5] == ["/www", "hello x"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_app_that_exits_before_it_is_ready_fails_the_launch(image: Image, backends, run_id: str, tmp_path: Path,
                                                              backend: str) -> None:
    wl = ImageWorkload("dies", image, command=("/bin/sh", "-c", "exit 3"), ready=Ready("tcp", port=6380))
    inst = backends[backend].launch(_spec(run_id, 0, wl, tmp_path))
    with inst, pytest.raises(BackendError, match="exited with status 3"):
        inst.wait_ready(10)


def test_bare_does_not_take_another_programs_port_for_the_apps(image: Image, backends, run_id: str,
                                                               tmp_path: Path) -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        wl = ImageWorkload("idle", image, command=("/bin/busybox", "sleep", "30"), ready=Ready("tcp", port=port),
                           stop="KILL")
        inst = backends["bare"].launch(_spec(run_id, 0, wl, tmp_path))
        with inst, pytest.raises(BackendError, match="not from this instance.*another process holds the port"):
            inst.wait_ready(1)  # (the probe goes on until its deadline: the app might still answer)


@pytest.mark.parametrize("backend", ["unshare", "container", "oci:runc", "oci:crun"])
def test_stop_sends_the_stop_signal_then_waits(image: Image, backends, run_id: str, tmp_path: Path,
                                               backend: str) -> None:
    # PID 1 of a PID namespace gets the signal only because it has a handler (the trap)
    script = "trap 'echo bye; exit 0' USR1; echo up; while :; do /bin/busybox sleep 0.05; done"
    wl = ImageWorkload("polite", image, command=("/bin/sh", "-c", script), ready=Ready("log", pattern="^up$"),
                       stop="SIGUSR1", grace_s=8)
    inst = backends[backend].launch(_spec(run_id, 0, wl, tmp_path))
    with inst:
        inst.wait_ready(10)
        inst.stop()
        assert inst.wait(1) == 0
    assert "bye" in Path(inst.log_path or "").read_text()


def test_a_dead_runs_directory_and_tree_are_swept(image: Image, run_id: str, no_leftovers) -> None:
    tree = rundir.Tree(run_id, image, ("proc", "dev"), "test")
    upper = rundir.Upper.create(run_id, f"isobench-{run_id}-0", ("tmp",))
    assert os.path.ismount(tree.root) and (tree.root / "proc").is_dir() and (upper.upper / "tmp").stat().st_mode & 0o1777 == 0o1777
    run = rundir.run_dir(run_id)
    assert rundir.cleanup_leftovers(run_id) == [] and os.path.ismount(tree.root)  # a live run's: spared
    owners.release(run_id)  # as if its harness were gone
    removed = rundir.cleanup_leftovers(run_id)
    assert any(r.startswith("mount ") for r in removed) and not run.exists() and not os.path.ismount(tree.root)
    tree.mounted = False  # already unmounted by the sweep


RUN = """
[scenario]
backends = ["bare", "unshare", "container"]
repetitions = 1
warmups = 0
timeout = 20
[workload.web]
image = "kit"
ready = { http = "8080/index.html" }
stop = "KILL"
[[experiment]]
measurement = "startup"
workloads = ["noop", "web"]
[[experiment]]
measurement = "memory"
workloads = ["web"]
settle = 0.1
[[experiment]]
measurement = "mem_limit"
workloads = ["web"]
settle = 0.1
grid = { limit_mib = [32] }
[[experiment]]
measurement = "cpu_quota"
workloads = ["web"]
settle = 0
grid = { quota = [0.5] }
[[experiment]]
measurement = "pids_limit"
workloads = ["web"]
settle = 0.1
grid = { limit = [16] }
"""


def test_a_run_measures_an_image_beside_the_catalog(image: Image, tmp_path: Path, run_id: str, no_leftovers) -> None:
    import tomllib

    from harness import results, runner, scenario
    from runtimes.image import resolve

    undo = resolve.use(lambda ref: image)
    try:
        sc = scenario.parse(tomllib.loads(RUN), "images.toml", RUN)
    finally:
        undo()
    run_dir = runner.run(sc, tmp_path, progress=False, run_id=run_id)
    rows = results.read_samples(run_dir)
    failed = [r for r in rows if r["status"] != "ok"]
    assert failed == []
    web = [r for r in rows if r["workload"] == "web"]
    assert web and all(r["image"] == image.digest for r in web)
    assert all(r["image"] is None for r in rows if r["workload"] == "noop")
    got = {(r["backend"], r["metric"]) for r in web}
    for b in ("bare", "unshare", "container"):
        assert {(b, "launch_to_ready"), (b, "pss"), (b, "oom_killed"), (b, "mem_limit_ready"),
                (b, "cpu_quota_ready"), (b, "pids_limit_ready")} <= got
    assert {(b, "startup_cpu") for b in ("bare", "container")} <= got  # unshare has no cgroup of its own
    manifest = results.read_manifest(run_dir)
    assert manifest["workloads"]["web"]["digest"] == image.digest
    from harness.report import model

    labels = set(model.load([run_dir]).summary[["series", "workload"]].itertuples(index=False, name=None))
    assert {("bare (chroot)", "web"), ("unshare (unshare(1) namespaces)", "web"), ("container", "web"),
            ("bare", "noop"), ("unshare", "noop")} <= labels  # the catalog's rows keep their labels
    assert not (rundir.runs_root() / f"isobench-{run_id}").exists(), "the run's directory outlived the run"
