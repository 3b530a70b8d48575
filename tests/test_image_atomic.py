"""An interrupted import (SIGKILL at any point, Ctrl-C) leaves nothing a later run uses, and the
next import or ``isobench cleanup`` removes what it left."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness import cleanup
from runtimes.image.model import ImageError
from runtimes.image.store import Store, cleanup_leftovers
from tests.ocibuild import dir_, layer, reg, write_oci

pytestmark = pytest.mark.privileged
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three layers of 800 small files: long enough to unpack that a kill lands in the middle."""
    src = tmp_path_factory.mktemp("big") / "src"
    layers = [layer(dir_(f"l{n}"), *(reg(f"l{n}/f{i}", b"x" * 64) for i in range(800))) for n in range(3)]
    write_oci(src, layers)
    return src


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ISOBENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _scratch(store: Path) -> list[Path]:
    return sorted(store.glob("isobench-import-*"))


def test_killed_after_moving_its_layers_before_its_record(cache: Path, big: Path) -> None:
    """The last window of an import: layers and blobs are in place, no record names them yet."""
    code = ("import os, signal, sys\n"
            "from runtimes.image import layout\n"
            "layout.Layout.write_record = lambda self, record: os.kill(os.getpid(), signal.SIGKILL)\n"
            "from runtimes.image.store import Store\n"
            "Store().import_(sys.argv[1], name='victim')\n")
    proc = subprocess.run([sys.executable, "-c", code, str(big)], cwd=ROOT, capture_output=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    store = Store()
    assert len(list((store.root / "layers/sha256").iterdir())) == 3  # the kill came after the move
    assert store.list() == []
    with pytest.raises(ImageError, match="no image 'victim'"):
        store.get("victim")
    (store.root / "isobench-import-1-dead").mkdir()  # and one an earlier kill left
    removed = cleanup_leftovers()
    assert sum(line.startswith("image layer") for line in removed) == 3
    assert any("isobench-import-1-dead" in line for line in removed)
    assert list((store.root / "layers/sha256").iterdir()) == [] and _scratch(store.root) == []
    image = store.import_(big, name="victim")
    assert [len(os.listdir(p / f"l{i}")) for i, p in enumerate(image.layers)] == [800] * 3


def _interrupt(big: Path, sig: int) -> subprocess.CompletedProcess[str]:
    """Start ``isobench image import``, send ``sig`` once it is unpacking its second layer."""
    proc = subprocess.Popen([sys.executable, "-m", "harness", "image", "import", str(big), "--name", "big"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    store = Path(os.environ["ISOBENCH_CACHE"]) / "images"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if any((s / "layer-1" / "tree").is_dir() for s in _scratch(store)):
            proc.send_signal(sig)
            break
        time.sleep(0.002)
    out, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_sigkill_mid_layer_leaves_a_temporary_directory_the_next_import_removes(cache: Path, big: Path) -> None:
    done = _interrupt(big, signal.SIGKILL)
    assert done.returncode == -signal.SIGKILL, "the import finished before the kill: make the image bigger"
    store = Store()
    left = _scratch(store.root)
    assert len(left) == 1 and (left[0] / "layer-0" / "tree").is_dir()
    assert store.list() == [] and list((store.root / "layers/sha256").iterdir()) == []
    image = store.import_(big, name="big")  # holds the lock: the dead import's directory goes
    assert _scratch(store.root) == [] and [i.name for i in store.list()] == ["big:latest"]
    assert len(os.listdir(image.layers[2] / "l2")) == 800


def test_ctrl_c_mid_import_removes_its_own_temporary_directory(cache: Path, big: Path) -> None:
    done = _interrupt(big, signal.SIGINT)
    assert done.returncode == 130 and done.stderr == "isobench: interrupted\n", done.stderr
    store = Store()
    assert _scratch(store.root) == [] and store.list() == []
    assert list((store.root / "layers/sha256").iterdir()) == []


def test_cleanup_leaves_a_live_import_alone(cache: Path) -> None:
    store = Store()
    with store.layout.locked():  # as a running import holds it
        (store.root / "isobench-import-7-live").mkdir()
        assert store.sweep() == []
    assert (store.root / "isobench-import-7-live").is_dir()
    assert store.sweep() == [f"image store temporary directory {store.root / 'isobench-import-7-live'}"]


def test_isobench_cleanup_runs_the_image_sweep_and_not_for_a_run_id(cache: Path) -> None:
    assert cleanup_leftovers in cleanup._sweepers()
    store = Store()
    store.layout.create()
    (store.root / "isobench-import-9-dead").mkdir()
    assert cleanup_leftovers("20260101-000000-abcd") == []
    assert len(cleanup_leftovers()) == 1
