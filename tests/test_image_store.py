"""The image store: import an OCI layout (dir or tar) or a docker-archive, get, list, remove.

Images are made in the test with ``tarfile`` (tests/ocibuild.py); the overlay test mounts the
imported layers for real, in a private mount namespace, and reads the merged view.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from runtimes.image.model import ImageError
from runtimes.image.store import Store
from runtimes.image.unpack import OPAQUE_XATTR
from tests.ocibuild import dev, dir_, fifo, hard, layer, pack, reg, sym, write_docker, write_oci

pytestmark = pytest.mark.privileged

BASE = layer(dir_("etc"), reg("etc/os-release", b"ID=test\n"), dir_("usr"), dir_("usr/bin"),
             reg("usr/bin/tool", b"#!/bin/sh\n", mode=0o4755), sym("bin", "usr/bin"),
             dir_("tmp", mode=0o1777), dir_("data"), reg("data/a", b"a"), reg("data/b", b"b"),
             dir_("gone"), reg("gone/x", b"x"))
APP = layer(dir_("app", uid=1000, gid=1000), reg("app/main.py", b"print('hi')\n", uid=1000, gid=100, mode=0o640,
                                                 xattrs={"user.origin": "test"}),
            hard("app/same.py", "app/main.py"), sym("app/abs", "/etc/os-release"), fifo("app/pipe"),
            reg("data/.wh.a"), reg("gone/.wh..wh..opq"), reg("gone/new", b"new"))


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "images")


def test_an_oci_layout_is_imported_layer_by_layer_with_its_config(store: Store, tmp_path: Path) -> None:
    built = write_oci(tmp_path / "src", [BASE, APP], ref="v1", Cmd=["python3", "/app/main.py"],
                      Entrypoint=["/bin/sh", "-c"], WorkingDir="/app", User="1000:100",
                      ExposedPorts={"8000/tcp": {}}, Env=["PATH=/usr/bin", "A=1", "A=2"])
    image = store.import_(tmp_path / "src", name="demo/app:1")
    assert (image.name, image.digest, image.config_digest) == ("demo/app:1", built.manifest_digest, built.config_digest)
    assert image.diff_ids == built.diff_ids and len(image.layers) == 2
    base, app = image.layers  # bottom first
    assert (base / "etc/os-release").read_bytes() == b"ID=test\n"
    assert image.lowerdir() == f"{app}:{base}"
    c = image.config
    assert c.argv() == ("/bin/sh", "-c", "python3", "/app/main.py")
    assert (c.workdir, c.user, c.exposed_ports, c.env["A"]) == ("/app", "1000:100", ("8000/tcp",), "2")
    assert image.size == sum(len(x) for x in (b"ID=test\n", b"#!/bin/sh\n", b"a", b"b", b"x", b"print('hi')\n", b"new"))
    # get: by name, by name without its tag's default, by digest prefix (with or without sha256:)
    assert store.get("demo/app:1") == image
    assert store.get(built.manifest_digest[7:19]).digest == image.digest
    assert store.get(built.manifest_digest[:20]).digest == image.digest
    assert store.get(built.config_digest[7:19]).digest == image.digest


def test_owners_modes_xattrs_links_and_setuid_are_kept(store: Store, tmp_path: Path) -> None:
    write_oci(tmp_path / "src", [BASE, APP])
    base, app = store.import_(tmp_path / "src", name="t").layers
    st = os.lstat(app / "app/main.py")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1000, 100, 0o640)
    assert os.getxattr(app / "app/main.py", "user.origin") == b"test"
    assert os.lstat(app / "app/same.py").st_ino == st.st_ino  # a hardlink within the layer
    assert os.readlink(app / "app/abs") == "/etc/os-release"  # kept as written, resolved inside the rootfs
    assert stat.S_ISFIFO(os.lstat(app / "app/pipe").st_mode)
    assert stat.S_IMODE(os.lstat(base / "usr/bin/tool").st_mode) == 0o4755  # setuid stays (mounts are nosuid)
    assert stat.S_IMODE(os.lstat(base / "tmp").st_mode) == 0o1777
    assert os.lstat(app / "app").st_uid == 1000
    assert os.lstat(base / "etc/os-release").st_mtime == 1_700_000_000


def test_whiteouts_become_overlayfs_whiteouts(store: Store, tmp_path: Path) -> None:
    write_oci(tmp_path / "src", [BASE, APP])
    _, app = store.import_(tmp_path / "src", name="t").layers
    wh = os.lstat(app / "data/a")
    assert stat.S_ISCHR(wh.st_mode) and wh.st_rdev == 0
    assert not (app / "data/.wh.a").exists()
    assert os.getxattr(app / "gone", OPAQUE_XATTR) == b"y"
    assert not (app / "gone/.wh..wh..opq").exists()


def test_the_layers_mount_as_overlay_lowerdirs_and_show_the_image(store: Store, tmp_path: Path) -> None:
    """The real check of the whiteout form: overlayfs itself hides what the top layer deleted."""
    write_oci(tmp_path / "src", [BASE, APP])
    image = store.import_(tmp_path / "src", name="t")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    script = (f"mount -t overlay isobench-test -o ro,lowerdir={image.lowerdir()} {mnt} && "
              f"cd {mnt} && ls data gone && cat etc/os-release app/main.py && readlink bin")
    out = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["data:", "b", "gone:", "new", "ID=test", "print('hi')", "usr/bin"]


def test_an_oci_archive_and_a_docker_archive_give_the_same_layers(store: Store, tmp_path: Path) -> None:
    write_oci(tmp_path / "src", [BASE, APP], compression="zstd", ref="example.org/demo:2")
    from_tar = store.import_(pack(tmp_path / "src", tmp_path / "src.tar"))
    assert from_tar.name == "example.org/demo:2"  # the name the archive carries
    docker = store.import_(write_docker(tmp_path / "d.tar", [BASE, APP], ["localhost/demo:3"]))
    assert docker.name == "localhost/demo:3"
    assert docker.layers == from_tar.layers  # unpacked once per diff_id, shared
    assert docker.config_digest == from_tar.config_digest
    assert docker.digest != from_tar.digest  # docker-archive has no manifest: the store wrote an OCI one
    written = json.loads(store.layout.blob(docker.digest).read_bytes())
    assert written["layers"][0]["mediaType"] == "application/vnd.oci.image.layer.v1.tar"


def test_a_shared_layer_is_removed_only_with_its_last_image(store: Store, tmp_path: Path) -> None:
    write_oci(tmp_path / "a", [BASE], ref="a")
    write_oci(tmp_path / "b", [BASE, APP], compression="", ref="b")
    a = store.import_(tmp_path / "a", name="one")
    b = store.import_(tmp_path / "b", name="two")
    assert a.layers[0] == b.layers[0]
    store.import_(tmp_path / "a", name="one-again")
    assert store.remove("one") == ["name one:latest"]  # the image keeps its other name
    assert "image" in " ".join(store.remove("one-again"))
    assert b.layers[0].is_dir() and not store.layout.blob(a.digest).exists()
    store.remove(b.digest[:16])
    assert not b.layers[0].exists() and store.list() == []
    assert list(store.layout.root.glob("layers/sha256/*")) == []
    assert list(store.layout.root.glob("blobs/sha256/*")) == []


def test_the_store_is_itself_an_oci_layout_that_names_its_images(store: Store, tmp_path: Path) -> None:
    write_oci(tmp_path / "src", [BASE])
    image = store.import_(tmp_path / "src", name="reg.example:5000/x/y:tag")
    index = json.loads((store.root / "index.json").read_text())
    assert [(m["digest"], m["annotations"]["org.opencontainers.image.ref.name"]) for m in index["manifests"]] == \
        [(image.digest, "reg.example:5000/x/y:tag")]
    again = Store(tmp_path / "other").import_(store.root, ref="reg.example:5000/x/y:tag", name="copy")
    assert again.digest == image.digest and again.diff_ids == image.diff_ids


def test_a_source_with_several_images_needs_ref(store: Store, tmp_path: Path) -> None:
    first = write_oci(tmp_path / "src", [BASE], ref="one")
    from tests.ocibuild import index_manifests
    write_oci(tmp_path / "src", [BASE, APP], ref="two", manifests=index_manifests(tmp_path / "src"))
    with pytest.raises(ImageError, match=r"holds 2 images \(one, two\): choose one with --ref"):
        store.import_(tmp_path / "src", name="x")
    assert store.import_(tmp_path / "src", ref="one", name="x").digest == first.manifest_digest
    assert store.import_(tmp_path / "src", ref="two").name == "src:two"  # a bare tag: named after the source
    with pytest.raises(ImageError, match="no image named 'three'"):
        store.import_(tmp_path / "src", ref="three")


def test_device_nodes_are_skipped_and_counted(store: Store, tmp_path: Path) -> None:
    write_oci(tmp_path / "src", [layer(dir_("dev"), dev("dev/null"), dev("dev/sda", 8, 0, block=True),
                                       dev("dev/zero0", 0, 0), reg("dev/keep", b"k"))])
    image = store.import_(tmp_path / "src", name="t")
    assert sorted(os.listdir(image.layers[0] / "dev")) == ["keep"]
    assert store.record(image)["skipped_devices"] == 3


@pytest.mark.parametrize("bad", ["", "UPPER", "a b", "x:", "a//b", "-a", "a:" + "t" * 200, "x@sha256:00"])
def test_an_invalid_name_is_refused_before_anything_is_read(store: Store, tmp_path: Path, bad: str) -> None:
    with pytest.raises(ImageError, match="image name"):
        store.import_(tmp_path / "does-not-exist", name=bad)
    assert not store.root.exists()


def test_unknown_refs_say_how_to_find_images(store: Store) -> None:
    with pytest.raises(ImageError, match="no image 'nope' in the store"):
        store.get("nope")
