"""What an image's files cannot do on any process backend, seen from inside: a setuid-root
program in the image grants its (non-root) user nothing, and a device node in the image cannot
be opened -- the image's root is mounted ``nosuid,nodev`` everywhere (crun included, which
binds the bundle's root anew: the bundle binds it once more with those flags).

The node is /dev/null's (1:3), which every backend's device rules allow: only ``nodev`` stops
its open.  (The setuid bit would be without effect under ``no_new_privs`` alone; the mount
table is checked too, in tests/test_image_run.py.)
"""

from __future__ import annotations

import dataclasses
import errno
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

import runtimes
from runtimes.base import LaunchSpec
from runtimes.image.model import Image
from runtimes.image.workload import ImageWorkload
from runtimes.workloads import Ready
from tests import imagekit
from tests.conftest import require

pytestmark = pytest.mark.privileged
BACKENDS = ("bare", "unshare", "container", "oci:runc", "oci:crun")


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Image:
    """The test image with a third layer: the probe, a setuid-root copy of it, a 1:3 node."""
    require(shutil.which("gcc") is not None, "gcc missing (isobench doctor --fix installs it)")
    base = tmp_path_factory.mktemp("image")
    top = base / "layer2"
    (top / "bin").mkdir(parents=True, mode=0o755)
    r = subprocess.run(["gcc", "-static", "-O2", "-o", str(top / "bin" / "probe"),
                        str(Path(__file__).with_name("probe.c"))], capture_output=True, text=True)
    require(r.returncode == 0, f"cannot build the probe statically (libc6-dev?): {r.stderr[-300:]}")
    shutil.copy2(top / "bin" / "probe", top / "bin" / "probe-suid")
    os.chown(top / "bin" / "probe-suid", 0, 0)
    os.chmod(top / "bin" / "probe-suid", 0o4755)
    (top / "nodes").mkdir(mode=0o755)
    os.mknod(top / "nodes" / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.chmod(top / "nodes" / "null", 0o666)
    two = imagekit.make(base, name="isobench-test-privileges")
    return dataclasses.replace(two, layers=(*two.layers, top), diff_ids=(*two.diff_ids, "sha256:" + "2" * 64))


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_images_setuid_files_and_device_nodes_are_without_effect(image: Image, run_id: str, tmp_path: Path,
                                                                     backend: str, no_leftovers) -> None:
    wl = ImageWorkload("privileges", image, command=("/bin/sh", "-c", "/bin/probe-suid ids; /bin/probe open /nodes/null"),
                       user="app", ready=Ready("exit"))
    spec = LaunchSpec(wl, run_id, f"isobench-{run_id}-0", timeout_s=10, log_dir=str(tmp_path))
    with runtimes.get(backend) as b:
        with b.launch(spec) as inst:
            assert inst.wait(10) == 0
    out = Path(inst.log_path or "").read_text()
    results = dict(line.removeprefix("ISOBENCH RESULT ").split("=", 1) for line in out.splitlines()
                   if line.startswith("ISOBENCH RESULT "))
    assert results == {"uid": "1000", "euid": "1000", "open": str(errno.EACCES)}, out
