"""``isobench image import|ls|inspect|rm``, and images made by Debian's own tools (umoci, skopeo)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from harness import cli
from runtimes.image.store import Store
from tests.conftest import require
from tests.ocibuild import dir_, layer, reg, write_oci

pytestmark = pytest.mark.privileged


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ISOBENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def isobench(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = cli.main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_import_ls_inspect_rm(cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    built = write_oci(tmp_path / "src", [layer(dir_("etc"), reg("etc/motd", b"hello\n"))], Cmd=["cat", "/etc/motd"])
    rc, out, _ = isobench(capsys, "image", "import", str(tmp_path / "src"), "--name", "demo")
    assert rc == 0 and out.startswith(f"imported demo:latest ({built.manifest_digest}, 1 layer(s), 6 B)")
    rc, out, _ = isobench(capsys, "image", "ls")
    header, row = out.splitlines()
    assert header.split() == ["NAME", "DIGEST", "SIZE", "LAYERS", "CREATED"]
    assert row.split() == ["demo:latest", built.manifest_digest[7:19], "6", "B", "1", "2026-01-01T00:00:00"]
    rc, out, _ = isobench(capsys, "image", "inspect", "demo")
    doc = json.loads(out)
    assert doc["config"]["cmd"] == ["cat", "/etc/motd"] and doc["layers"][0]["diff_id"] == built.diff_ids[0]
    assert Path(doc["layers"][0]["path"], "etc/motd").read_text() == "hello\n"
    assert doc["source"] == str(tmp_path / "src") and doc["format"] == "oci"
    rc, out, _ = isobench(capsys, "image", "rm", "demo")
    assert rc == 0 and out.splitlines()[:2] == ["removed name demo:latest", f"removed image {built.manifest_digest[7:19]}"]
    assert isobench(capsys, "image", "ls")[1].splitlines() == ["NAME  DIGEST  SIZE  LAYERS  CREATED"]


@pytest.mark.parametrize("argv, message", [
    (["image", "import", "/nonexistent/image"], "/nonexistent/image: no such file or directory"),
    (["image", "import", "/dev/null"], "/dev/null is neither a directory nor a file"),
    (["image", "import", "/etc", "--name", "x"], "/etc is not an OCI image layout or a docker-archive"),
    (["image", "import", "/etc/hostname", "--name", "x"], "/etc/hostname: not a readable tar archive"),
    (["image", "import", "/etc", "--name", "Bad Name"], "image name 'Bad Name' is not a valid name"),
    (["image", "import", "/etc", "--max-layer-mib", "0"], "the layer size cap must be a positive number"),
    (["image", "inspect", "nothing"], "no image 'nothing' in the store"),
    (["image", "rm", "nothing"], "no image 'nothing' in the store"),
])
def test_bad_input_is_one_line_and_exit_2(cache: Path, capsys: pytest.CaptureFixture[str], argv: list[str],
                                         message: str) -> None:
    rc, out, err = isobench(capsys, *argv)
    assert rc == 2 and out == ""
    assert err.startswith(f"isobench: error: {message}") and err.count("\n") == 1, err


def test_an_unreadable_source_is_one_line(cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Root may read any file by its mode; one whose read fails (EIO) stands for the rest."""
    rc, _, err = isobench(capsys, "image", "import", "/proc/self/mem", "--name", "x")
    assert (rc, err) == (2, "isobench: error: cannot read /proc/self/mem: Input/output error\n")
    (tmp_path / "src" / "index.json").mkdir(parents=True)  # a layout whose index.json is a directory
    rc, _, err = isobench(capsys, "image", "import", str(tmp_path / "src"), "--name", "x")
    assert rc == 2 and "is not an OCI image layout" in err


def _tools() -> None:
    for tool in ("umoci", "skopeo"):
        require(shutil.which(tool) is not None, f"{tool} not installed (isobench doctor --fix installs it)")


def test_images_made_by_umoci_and_converted_by_skopeo_import_alike(cache: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """What Debian's tools write: an OCI layout (umoci), an oci-archive and a docker-archive (skopeo)."""
    _tools()
    monkeypatch.chdir(tmp_path)
    run = lambda *a: subprocess.run(a, check=True, capture_output=True, timeout=120)  # noqa: E731
    run("umoci", "init", "--layout", "lay")
    run("umoci", "new", "--image", "lay:base")
    run("umoci", "unpack", "--image", "lay:base", "bundle")
    (tmp_path / "bundle/rootfs/etc").mkdir(parents=True, exist_ok=True)
    (tmp_path / "bundle/rootfs/etc/motd").write_text("made by umoci\n")
    run("umoci", "repack", "--image", "lay:base", "bundle")
    run("umoci", "config", "--image", "lay:base", "--tag", "v1", "--config.cmd", "cat", "--config.cmd", "/etc/motd")
    run("skopeo", "copy", "--quiet", "oci:lay:v1", "oci-archive:img.tar:tools/oci:v1")
    run("skopeo", "copy", "--quiet", "oci:lay:v1", "docker-archive:docker.tar:tools/docker:v1")
    store = Store()
    from_dir = store.import_(tmp_path / "lay", ref="v1", name="tools/dir:v1")
    from_oci = store.import_(tmp_path / "img.tar")
    from_docker = store.import_(tmp_path / "docker.tar")
    assert (from_oci.name, from_docker.name) == ("tools/oci:v1", "docker.io/tools/docker:v1")
    assert from_dir.digest == from_oci.digest  # skopeo copied the same manifest
    assert from_dir.diff_ids == from_docker.diff_ids and from_dir.layers == from_docker.layers
    assert from_docker.config.argv() == ("cat", "/etc/motd")
    assert (from_dir.layers[-1] / "etc/motd").read_text() == "made by umoci\n"
