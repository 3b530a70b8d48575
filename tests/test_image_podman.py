"""The podman peer on an image of the store: pulled from the store's own layout (same digest),
ready by the app's answer inside its namespace, stopped, removed (real podman, crun, conmon)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

import runtimes
from runtimes.base import BackendError, LaunchSpec, Limits
from runtimes.image.model import Image
from runtimes.image.store import Store
from runtimes.image.workload import ImageWorkload
from runtimes.workloads import Ready, Workload
from tests import ocibuild
from tests.conftest import require

pytestmark = pytest.mark.privileged


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Image]:
    """A one-layer busybox image imported into the store under a name of this test's own."""
    require(shutil.which("podman") is not None, "podman not installed (isobench doctor --fix)")
    with open("/bin/busybox", "rb") as f:
        busybox = f.read()
    layer = ocibuild.layer(ocibuild.dir_("bin"), ocibuild.reg("bin/busybox", busybox, mode=0o755),
                           ocibuild.dir_("www"), ocibuild.reg("www/index.html", b"hello\n"))
    built = ocibuild.write_oci(tmp_path_factory.mktemp("oci"), [layer], Entrypoint=["/bin/busybox"],
                               Cmd=["httpd", "-f", "-p", "8080", "-h", "/www"], WorkingDir="/www")
    store = Store()
    name = f"isobench-test/podman-{os.getpid()}:latest"
    image = store.import_(built.path, name=name)
    yield image
    with runtimes.get("podman") as b:
        b.podman("rmi", "--force", image.config_digest.split(":")[-1])  # type: ignore[attr-defined]
    store.remove(name)


def _spec(run_id: str, n: int, wl: Workload | ImageWorkload, tmp_path: Path, limits: Limits = Limits()) -> LaunchSpec:
    return LaunchSpec(wl, run_id, f"isobench-{run_id}-{n}", limits=limits, timeout_s=30, log_dir=str(tmp_path))


def test_podman_runs_the_stored_image_and_is_ready_by_its_answer(stored: Image, run_id: str, tmp_path: Path,
                                                                no_leftovers) -> None:
    web = ImageWorkload("web", stored, ready=Ready("http", port=8080, path="/index.html"), grace_s=0.5)
    done = ImageWorkload("done", stored, command=("/bin/busybox", "sh", "-c", "pwd; id -u"), user="123:45")
    with runtimes.get("podman") as b:
        b.prepare()
        inst = b.launch(_spec(run_id, 0, web, tmp_path))
        with inst:
            assert inst.wait_ready(30) > (inst.times.t_launch or 0)
            inst.stop()  # SIGTERM: busybox httpd, PID 1 without a handler, ignores it; SIGKILL after the grace
            inst.wait(30)
        assert inst.times.t_exit is not None and inst.times.t_clean is not None
        inst = b.launch(_spec(run_id, 1, done, tmp_path))
        with inst:
            assert inst.wait_ready(30) == inst.times.t_exit
        assert Path(inst.log_path or "").read_text().split() == ["/www", "123"]
        meta = b.metadata()
        assert meta["images"] == {stored.digest: stored.config_digest.split(":")[-1]}
        assert b.podman("ps", "--all", "--quiet").stdout.strip() == ""  # type: ignore[attr-defined]


def test_podman_takes_image_workloads_without_limits_only(stored: Image, run_id: str, tmp_path: Path) -> None:
    with runtimes.get("podman") as b:
        with pytest.raises(BackendError, match="image workloads only"):
            b.launch(_spec(run_id, 0, Workload("noop"), tmp_path))
        with pytest.raises(BackendError, match="takes no limits"):
            b.launch(_spec(run_id, 1, ImageWorkload("web", stored), tmp_path, Limits(pids=10)))
