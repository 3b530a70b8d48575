"""What runs as root is what we built (issue 25 item 4): caches root's alone, sealed content.

The native zygote, the image store and the kernel cache each refuse, with one line, a cache
directory someone else can write to and a file whose bytes changed since isobench made it;
a file from before seals existed is made again, never trusted as found.  The proc connector
subscription is released on every exit path the kernel lets us see (its socket); its
listener count after a SIGKILL is the kernel's (``runtimes/exits.py``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from harness.errors import UserError
from harness.matrix import kernels
from harness.soak import procfs
from runtimes import trust
from runtimes.container.launcher import native
from runtimes.container.launcher.zygote import Zygote, ZygoteError
from runtimes.image.model import ImageError
from runtimes.image.store import Store
from tests.ocibuild import dir_, layer, reg, write_oci


def _flip(path: Path) -> None:
    """Change one byte in the middle (as root, as a tamperer would)."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


# -- the directory rule ---------------------------------------------------------------------
def test_a_cache_dir_is_root_s_alone_sticky_tmp_allowed(tmp_path: Path) -> None:
    good = trust.ensure_dir(tmp_path / "a" / "b", "the cache")
    assert trust.untrusted_dir(good) is None
    (tmp_path / "open").mkdir(mode=0o777)
    os.chmod(tmp_path / "open", 0o777)
    assert "writable by others (mode 777)" in str(trust.untrusted_dir(tmp_path / "open" / "c"))
    os.chmod(tmp_path / "open", 0o1777)  # sticky, as /tmp: others cannot replace what is root's
    assert trust.untrusted_dir(tmp_path / "open" / "c") is None
    (tmp_path / "theirs").mkdir()
    os.chown(tmp_path / "theirs", 1000, 1000)
    assert "belongs to uid 1000" in str(trust.untrusted_dir(tmp_path / "theirs"))
    (tmp_path / "link").symlink_to(tmp_path / "theirs")  # followed: a link to theirs is theirs
    assert "belongs to uid 1000" in str(trust.untrusted_dir(tmp_path / "link" / "x"))
    with pytest.raises(trust.Untrusted, match=r"the cache .* is refused: .*belongs to uid 1000"):
        trust.ensure_dir(tmp_path / "link" / "x", "the cache")
    assert not (tmp_path / "theirs" / "x").exists()


def test_ensure_dir_makes_0755_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        made = trust.ensure_dir(tmp_path / "x" / "y", "the cache")
    finally:
        os.umask(old)
    assert {oct(os.stat(p).st_mode & 0o777) for p in (made, made.parent)} == {"0o755"}


def test_a_seal_names_the_bytes_and_the_origin(tmp_path: Path) -> None:
    f = tmp_path / "bin"
    f.write_bytes(b"built")
    trust.seal(f, {"from": "a"})
    trust.verify(f, {"from": "a"}, "the file")
    with pytest.raises(trust.Untrusted, match="names another origin"):
        trust.verify(f, {"from": "b"}, "the file")
    f.write_bytes(b"swapt")
    with pytest.raises(trust.Untrusted, match=r"the file .*bin is refused: its bytes changed since it was built"):
        trust.verify(f, {"from": "a"}, "the file")
    os.chmod(f, 0o666)
    with pytest.raises(trust.Untrusted, match="writable by others"):
        trust.verify(f, {"from": "a"}, "the file")


# -- the native zygote ----------------------------------------------------------------------
@pytest.mark.privileged
def test_the_zygote_runs_only_what_was_built_and_sealed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ISOBENCH_CACHE", str(tmp_path / "cache"))
    binary = native.build()
    assert trust.sealed(binary) and oct(binary.parent.stat().st_mode & 0o777) == "0o755"
    assert native.build() == binary  # cached: verified, not rebuilt
    z = Zygote("native")
    try:
        z.ensure()
        assert z.kind == "native" and z.alive()
        z.close()
        _flip(binary)  # swapped while the harness runs: the next start refuses it
        with pytest.raises(ZygoteError, match=r"the native zygote .* is refused: its bytes changed"):
            z.ensure()
    finally:
        z.close()
    with pytest.raises(ZygoteError, match="its bytes changed"):  # and a new harness refuses it too:
        Zygote("native").resolve()  # no quiet fall-back to the Python zygote
    trust.manifest_path(binary).unlink()  # unsealed (an older harness built it): built anew
    assert native.build() == binary and trust.sealed(binary)
    native.verified(binary)


@pytest.mark.privileged
def test_a_cache_others_can_write_is_refused_by_the_container(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from runtimes.container.backend import ContainerBackend

    cache = tmp_path / "open"
    cache.mkdir()
    os.chmod(cache, 0o777)
    monkeypatch.setenv("ISOBENCH_CACHE", str(cache))
    why = ContainerBackend().available()
    assert why is not None and "is refused" in why and "writable by others" in why
    with pytest.raises(trust.Untrusted, match="the zygote cache"):
        native.build()
    assert not (cache / "zygote").exists()


# -- the image store ------------------------------------------------------------------------
@pytest.mark.privileged
def test_the_image_store_refuses_layers_others_can_change_and_a_changed_config(tmp_path: Path) -> None:
    write_oci(tmp_path / "src", [layer(dir_("etc"), reg("etc/x", b"hi"))])
    store = Store(tmp_path / "store")
    image = store.import_(tmp_path / "src", name="t")
    assert store.get("t").digest == image.digest
    os.chmod(image.layers[0], 0o777)
    with pytest.raises(ImageError, match=r"image t:latest is refused: .*tree is writable by others"):
        store.get("t")
    os.chmod(image.layers[0], 0o755)
    _flip(store.layout.blob(image.config_digest))
    with pytest.raises(ImageError, match="config blob no longer matches its digest"):
        store.get("t")
    (tmp_path / "open").mkdir()
    os.chmod(tmp_path / "open", 0o777)
    with pytest.raises(ImageError, match=r"the image store .* is refused"):
        Store(tmp_path / "open" / "store").import_(tmp_path / "src", name="t")
    assert not (tmp_path / "open" / "store").exists()


# -- the kernel cache -----------------------------------------------------------------------
def test_a_cached_kernel_is_used_only_as_apt_verified_it(tmp_path: Path) -> None:
    image = trust.ensure_dir(tmp_path / "k" / "boot", "the kernel cache") / "vmlinuz-x"
    image.write_bytes(b"\0" * 0x202 + b"HdrS" + b"\0" * 64)
    origin = {"package": "linux-image-x", "version": "1"}
    assert not kernels.cached(image, origin)  # unsealed (fetched before seals): fetch again
    trust.seal(image, origin)
    assert kernels.cached(image, origin)
    assert kernels.not_a_bzimage(image) is None
    _flip(image)
    with pytest.raises(UserError, match=r"--kernels: the cached kernel .* is refused: its bytes changed"):
        kernels.cached(image, origin)
    assert "not an x86 kernel image" in str(kernels.not_a_bzimage(Path("/etc/passwd")))


# -- the proc connector subscription --------------------------------------------------------
_SUBSCRIBER = textwrap.dedent("""
    import os, sys, time
    sys.path.insert(0, sys.argv[1])
    from runtimes.exits import ExitEvents
    events = ExitEvents()
    print("subscribed", flush=True)
    if sys.argv[2] == "close":
        events.close()
    elif sys.argv[2] == "raise":
        raise SystemExit(3)  # never closed: the finalizer releases it at exit
    elif sys.argv[2] == "wait":
        time.sleep(60)
""")


@pytest.mark.privileged
@pytest.mark.parametrize("how", ["close", "raise", "sigkill"])
def test_the_proc_connector_subscription_goes_on_every_exit_path(how: str) -> None:
    root = str(Path(__file__).resolve().parents[1])
    proc = subprocess.Popen([sys.executable, "-c", _SUBSCRIBER, root, "wait" if how == "sigkill" else how],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "subscribed"
    if how == "sigkill":
        assert procfs.connector_listeners(proc.pid) == 1  # what the sampler counts, while it lives
        proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    # the socket is gone whichever way it ended (the kernel's listener count after SIGKILL is not
    # visible from user space, and is not lowered: documented in docs/reliability.md)
    deadline = time.monotonic() + 5
    while procfs.connector_listeners(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert procfs.connector_listeners(proc.pid) == 0


@pytest.mark.privileged
def test_an_unclosed_subscription_is_released_when_collected() -> None:
    import gc

    from runtimes.exits import ExitEvents

    events = ExitEvents()
    before = procfs.connector_listeners(os.getpid())
    assert before is not None and before >= 1
    del events
    gc.collect()
    assert procfs.connector_listeners(os.getpid()) == before - 1
