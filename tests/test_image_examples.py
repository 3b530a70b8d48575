"""Example images made with umoci from this host's Debian packages: reproducible, and they run.

The build test makes a small image twice (busybox in two layers); the example images proper
(python3 + an HTTP app, redis-server, the workload tree) are built once per machine into the
shared cache (``nox -s images`` builds the same) and started for real: each in an overlay of
its layers, in a private mount, network and PID namespace, answering on loopback there.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from runtimes.image import examples
from runtimes.image.build import ImageSpec, LayerSpec, build
from runtimes.image.model import Image
from runtimes.image.store import Store

pytestmark = pytest.mark.privileged

SMALL = ImageSpec("test/small", (
    LayerSpec("busybox", files=("/bin/busybox",), links=(("/bin", "usr/bin"),), dirs=(("/tmp", 0o1777), ("/proc", 0o555))),
    LayerSpec("greeting", contents=(("/etc/greeting", b"hello from a layer\n", 0o644),), dirs=(("/data", 0o750),))),
    cmd=("/bin/busybox", "cat", "/etc/greeting"), exposed_ports=("7/tcp",))


def _manifest_digest(layout: Path) -> str:
    return json.loads((layout / "index.json").read_text())["manifests"][0]["digest"]


def run_in(image: Image, tmp: Path, script: str, timeout: float = 60) -> str:
    """``script`` (sh) with ``$ROOT`` the image mounted as overlayfs — its layers as lowerdirs, a
    fresh upper in ``tmp`` — inside new mount, network and PID namespaces (loopback up): all of
    it, processes and mounts, ends with the script."""
    for d in ("upper", "work", "root"):
        (tmp / d).mkdir(parents=True)
    prologue = (f"set -e; ip link set lo up; ROOT={tmp / 'root'}; "
                f"mount -t overlay isobench-test -o lowerdir={image.lowerdir()},upperdir={tmp / 'upper'},"
                f"workdir={tmp / 'work'} $ROOT; mount -t proc proc $ROOT/proc; ")
    proc = subprocess.run(["unshare", "--mount", "--net", "--pid", "--fork", "--propagation", "private",
                           "sh", "-c", prologue + script], capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_the_same_inputs_build_the_same_image(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = _manifest_digest(build(SMALL, tmp_path / "a"))
    assert _manifest_digest(build(SMALL, tmp_path / "b")) == first
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1600000000")
    assert _manifest_digest(build(SMALL, tmp_path / "c")) != first  # the epoch is what made it repeatable
    image = Store(tmp_path / "store").import_(tmp_path / "a", name="test/small")
    assert len(image.layers) == 2 and image.config.argv() == ("/bin/busybox", "cat", "/etc/greeting")
    out = run_in(image, tmp_path / "run", 'chroot $ROOT /bin/busybox cat /etc/greeting; stat -c "%a %Y" $ROOT/data')
    assert out == "hello from a layer\n750 1700000000\n"


@pytest.fixture(scope="module")
def built() -> dict[str, Image]:
    """The example images, from the shared cache (built there the first time)."""
    return {name: examples.ensure(name) for name in examples.NAMES}


def _env(image: Image) -> str:
    return " ".join(f"{k}={v}" for k, v in image.config.env.items())


@pytest.mark.slow
def test_the_python_app_answers_http_as_nobody(built: dict[str, Image], tmp_path: Path) -> None:
    image = built["isobench/pyhttp"]
    assert image.config.labels[examples.READY_LABEL] == "http 8000/" and image.config.user == "65534:65534"
    argv = " ".join(image.config.argv())
    out = run_in(image, tmp_path, (
        f"cd $ROOT{image.config.workdir}; env -i {_env(image)} /usr/sbin/chroot --userspec={image.config.user} "
        f"$ROOT {argv} > $ROOT/../log & "
        "for i in $(seq 100); do python3 -c 'import urllib.request as u; print(u.urlopen(\"http://127.0.0.1:8000/\").read())' "
        "2>/dev/null && break; sleep 0.1; done; "
        "python3 -c 'import urllib.request as u; print(u.urlopen(\"http://127.0.0.1:8000/work?n=2\").read())'; "
        "cat $ROOT/../log; awk '/^Uid/ {print $2}' $(grep -l '^Name:.*python3' $ROOT/proc/[0-9]*/status)"))
    assert out.splitlines() == ["b'ok\\n'", "b'" + _sha_twice() + "\\n'", "listening on port 8000", "65534"]


def _sha_twice() -> str:
    import hashlib
    return hashlib.sha256(hashlib.sha256(b"ok").digest()).hexdigest()


@pytest.mark.slow
def test_redis_answers_ping_and_shares_the_base_layer(built: dict[str, Image], tmp_path: Path) -> None:
    redis, python = built["isobench/redis"], built["isobench/pyhttp"]
    assert redis.layers[0] == python.layers[0]  # base (glibc, /etc): one directory for both images
    out = run_in(redis, tmp_path, (
        f"env -i {_env(redis)} /usr/sbin/chroot $ROOT {' '.join(redis.config.argv())} > /dev/null & "
        "for i in $(seq 100); do python3 -c 'import socket; s = socket.create_connection((\"127.0.0.1\", 6379), 1); "
        "s.sendall(b\"PING\\r\\n\"); print(s.recv(64))' 2>/dev/null && break; sleep 0.1; done"))
    assert out == "b'+PONG\\r\\n'\n"


@pytest.mark.slow
def test_the_workload_tree_runs_from_its_image(built: dict[str, Image], tmp_path: Path) -> None:
    image = built["isobench/workload"]
    out = run_in(image, tmp_path, "chroot $ROOT /bin/sh -c 'busybox echo ok; stress-ng --version | head -c 9'")
    assert out == "ok\nstress-ng"
