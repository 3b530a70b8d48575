"""An image is untrusted input: a corpus of crafted archives, each refused with one line and
exit 2, with nothing written outside the store and nothing left inside it.

Every archive is made here with ``tarfile`` (tests/ocibuild.py) and aims at a *canary* tree
beside the store (absolute paths, ``..``, symlinks, hardlinks, whiteouts); after each import
the canary's files, modes, times and xattrs, and every path the test can see outside the
store, must be exactly as before, and the store must hold no record, layer, blob or
temporary directory.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from harness import cli
from runtimes.image.store import Store
from tests import ocibuild as ob
from tests.ocibuild import dev, dir_, hard, layer, reg, sym, write_docker, write_oci

pytestmark = pytest.mark.privileged

#: a layer the corpus starts from: a valid tar to cut or tamper with
GOOD = layer(dir_("etc"), reg("etc/a", b"a" * 5000), reg("etc/b", b"b" * 700))


def snapshot(root: Path, skip: set[Path]) -> dict[str, tuple[object, ...]]:
    """Every path under ``root`` but ``skip``: type, mode, owner, size, times, content, xattrs
    (``root``'s own times change as the sources and the store appear in it)."""
    out: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if Path(dirpath, d) not in skip]
        for name in ([] if Path(dirpath) == root else ["."]) + [*dirnames, *filenames]:
            p = Path(dirpath, name)
            if p in skip:
                continue
            st = os.lstat(p)
            content = hashlib.sha256(p.read_bytes()).hexdigest() if stat.S_ISREG(st.st_mode) else (
                os.readlink(p) if stat.S_ISLNK(st.st_mode) else None)
            xattrs = sorted(os.listxattr(p, follow_symlinks=False)) if not stat.S_ISLNK(st.st_mode) else []
            out[str(p)] = (st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns, st.st_nlink, content, xattrs)
    return out


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """(canary dir, source dir, a check that nothing moved outside the store and the store is empty)."""
    canary = tmp_path / "canary"
    (canary / "dir").mkdir(parents=True)
    (canary / "secret").write_text("host secret\n")
    (canary / "secret").chmod(0o600)
    (canary / "dir" / "file").write_text("x\n")
    os.utime(canary / "secret", (1_000_000, 1_000_000))
    monkeypatch.setenv("ISOBENCH_CACHE", str(tmp_path / "cache"))
    src = tmp_path / "src"
    skip = {tmp_path / "cache", src, src.with_suffix(".tar")}
    before = snapshot(tmp_path, skip)

    def unchanged() -> None:
        assert snapshot(tmp_path, skip) == before, "something outside the store changed"
        store = tmp_path / "cache" / "images"
        leftovers = [p for p in store.rglob("*") if p.name not in ("sha256", "blobs", "layers", "records",
                                                                   ".lock", "oci-layout", "index.json")
                     and not (p.name == "names.json" and json.loads(p.read_text()) == {})]
        assert leftovers == [], "a failed import left something in the store"
        if (store / "index.json").exists():
            assert json.loads((store / "index.json").read_text())["manifests"] == []

    return canary, src, unchanged


def _import(capsys: pytest.CaptureFixture[str], source: Path) -> tuple[int, str]:
    rc = cli.main(["image", "import", str(source), "--name", "hostile"])
    err = capsys.readouterr().err
    return rc, err


# --- the corpus: each builds its archive (aimed at the canary) and names the refusal -------------
Case = Callable[[Path, Path], Path]


def oci(*layers: bytes, compression: str = "gzip", **kw: object) -> Case:
    return lambda canary, src: write_oci(src, list(layers), compression=compression, **kw).path  # type: ignore[arg-type]


def _with(make: Callable[[Path], bytes]) -> Case:
    return lambda canary, src: write_oci(src, [make(canary)]).path


def _tampered(edit: Callable[[ob.Built], None], layers: list[bytes] | None = None) -> Case:
    def build(canary: Path, src: Path) -> Path:
        built = write_oci(src, layers or [GOOD])
        edit(built)
        return src
    return build


def _flip(path: Path, at: int = -10) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


def _cfg(**runtime: object) -> Case:
    return lambda canary, src: write_oci(src, [GOOD], **runtime).path


def _raw_cfg(doc: object) -> Case:
    return lambda canary, src: write_oci(src, [GOOD], cfg=doc).path  # type: ignore[arg-type]


def _nested(depth: int) -> Case:
    def build(canary: Path, src: Path) -> Path:
        built = write_oci(src, [GOOD])
        (src / "index.json").write_text("[" * depth + "]" * depth)
        return built.path
    return build


def _manifest(edit: Callable[[dict[str, object]], None]) -> Case:
    """A manifest edited after the fact (and its digest in the index updated to match)."""
    def build(canary: Path, src: Path) -> Path:
        built = write_oci(src, [GOOD])
        doc = json.loads(built.blob(built.manifest_digest).read_bytes())
        edit(doc)
        data = json.dumps(doc).encode()
        digest = ob.sha256(data)
        built.blob(digest).write_bytes(data)
        index = json.loads((src / "index.json").read_text())
        index["manifests"][0].update(digest=digest, size=len(data))
        (src / "index.json").write_text(json.dumps(index))
        return src
    return build


def _docker(layers: list[bytes], **kw: object) -> Case:
    return lambda canary, src: write_docker(src.with_suffix(".tar"), layers, ["x:1"], **kw)  # type: ignore[arg-type]


CORPUS: dict[str, tuple[Case, str]] = {
    "dotdot entry": (_with(lambda c: layer(reg("../../canary/pwned", b"x"))), "leaves the layer (..)"),
    "dotdot inside a path": (_with(lambda c: layer(dir_("a"), reg("a/../../canary/pwned", b"x"))), "leaves the layer"),
    "absolute entry": (_with(lambda c: layer(reg(f"{c}/pwned", b"x"))), "has an absolute path"),
    "symlink out, then a write through it": (
        _with(lambda c: layer(sym("link", str(c)), reg("link/pwned", b"x"))), "lies beneath the symlink 'link'"),
    "relative symlink out, then a write through it": (
        _with(lambda c: layer(sym("link", "../../../../../../" + str(c)), reg("link/secret", b"x"))),
        "lies beneath the symlink"),
    "symlink out in one layer, a write through it in the next": (
        oci(layer(sym("link", "/"), sym("etc", "/etc")), layer(reg("link/pwned", b"x"))),
        "layer 2 writes beneath 'link', a symlink of a lower layer"),
    "a whiteout through a symlink": (
        _with(lambda c: layer(sym("d", str(c)), reg("d/.wh.secret"))), "lies beneath the symlink 'd'"),
    "an opaque marker through a symlink": (
        _with(lambda c: layer(sym("d", str(c)), reg("d/.wh..wh..opq"))), "lies beneath the symlink 'd'"),
    "a whiteout through a lower layer's symlink": (
        oci(layer(sym("d", "/tmp")), layer(reg("d/.wh.x"))), "writes beneath 'd', a symlink of a lower layer"),
    "hardlink to a host file (absolute)": (
        _with(lambda c: layer(hard("h", f"{c}/secret"))), "the target is not a file of this layer"),
    "hardlink to a host file (..)": (
        _with(lambda c: layer(hard("h", "../../../canary/secret"))), "leaves the layer"),
    "hardlink through a symlink": (
        _with(lambda c: layer(sym("l", str(c)), hard("h", "l/secret"))), "the target is not a file of this layer"),
    "hardlink to a directory": (_with(lambda c: layer(dir_("d"), hard("h", "d"))), "not a file of this layer"),
    "whiteout naming ..": (_with(lambda c: layer(dir_("a"), reg("a/.wh..."))), "whiteout 'a/.wh...' names '..'"),
    "whiteout naming .": (_with(lambda c: layer(dir_("a"), reg("a/.wh.."))), "whiteout 'a/.wh..' names '.'"),
    "whiteout naming nothing": (_with(lambda c: layer(reg(".wh."))), "names ''"),
    "the layer root as a symlink": (_with(lambda c: layer(sym(".", str(c)))), "root entry is not a directory"),
    "a file used as a directory": (_with(lambda c: layer(reg("f", b"x"), reg("f/g", b"y"))), "'f' is not a directory"),
    "layer digest mismatch": (_tampered(lambda b: _flip(b.blob(b.layer_digests[0]))), "digest mismatch"),
    "config digest mismatch": (_tampered(lambda b: _flip(b.blob(b.config_digest), 5)), "digest mismatch"),
    "manifest digest mismatch": (_tampered(lambda b: _flip(b.blob(b.manifest_digest), 5)), "digest mismatch"),
    "a layout blob that is a symlink out": (
        _tampered(lambda b: (b.blob(b.config_digest).unlink(), b.blob(b.config_digest).symlink_to("/etc/hostname"))),
        "leads out of"),
    "missing layer blob": (_tampered(lambda b: b.blob(b.layer_digests[0]).unlink()), "is missing from the source"),
    "missing manifest blob": (_tampered(lambda b: b.blob(b.manifest_digest).unlink()), "is missing from the source"),
    "missing config blob": (_tampered(lambda b: b.blob(b.config_digest).unlink()), "is missing from the source"),
    "diff_id mismatch": (_raw_cfg(ob.config([ob.sha256(b"other")])), "the config's rootfs.diff_ids says"),
    "truncated tar (in a file's data)": (oci(GOOD[:3000], compression=""), "not a readable tar layer"),
    "truncated tar (no end marker)": (oci(GOOD[:GOOD.index(b"b" * 700) + 1024], compression=""),
                                      "ends without its end marker"),
    "truncated gzip": (oci(gzip.compress(GOOD)[:len(gzip.compress(GOOD)) // 2], compression=""),
                       "not a readable gzip layer"),
    "garbage tar": (oci(os.urandom(4096), compression=""), "not a readable tar layer"),
    "garbage in gzip": (oci(ob.compress(os.urandom(4096), "gzip"), compression=""), "not a readable gzip layer"),
    "garbage in zstd": (oci(ob.compress(os.urandom(4096), "zstd"), compression=""), "not a readable zstd layer"),
    "garbage after gzip": (oci(ob.compress(GOOD, "gzip") + b"junk" * 10, compression=""), "not a readable gzip layer"),
    "empty layer blob": (oci(b"", compression=""), "not a readable tar layer"),
    "garbage after the tar": (oci(GOOD[:-1024] + b"\xff" * 1024, compression=""), "data after a broken tar header"),
    "a huge pax header": (_with(lambda c: layer(reg("f", b"x", xattrs={"user.big": "x" * (2 << 20)}))),
                          "a tar extended header of"),
    "gzip bomb": (oci(layer(reg("zeros", bytes(3 << 20))), compression="gzip"), "larger than the cap of 1 MiB"),
    "zstd bomb": (oci(layer(reg("zeros", bytes(3 << 20))), compression="zstd"), "larger than the cap of 1 MiB"),
    "giant env entry": (_cfg(Env=["A=" + "x" * 200_000]), "Env[0] is longer than"),
    "giant env in total": (_cfg(Env=[f"K{i}={'x' * 100_000}" for i in range(12)]), "more than 1048576 cannot be executed"),
    "env entry without =": (_cfg(Env=["JUSTAKEY"]), "Env[0] 'JUSTAKEY' is not KEY=VALUE"),
    "non-string cmd": (_cfg(Cmd=["ok", 5]), "Cmd[1] is not a string (int)"),
    "cmd not a list": (_cfg(Cmd="sh -c x"), "Cmd is not a list"),
    "non-string env": (_cfg(Env=[{"a": 1}]), "Env[0] is not a string (dict)"),
    "relative workdir": (_cfg(WorkingDir="relative/dir"), "WorkingDir 'relative/dir' is not an absolute path"),
    "NUL in a string": (_cfg(Entrypoint=["/bin/sh\x00-c"]), "contains a NUL character"),
    "absurd user": (_cfg(User="a:b:c"), "is not USER[:GROUP]"),
    "absurd stop signal": (_cfg(StopSignal="SIGKILL; rm -rf /"), "is not a signal"),
    "absurd exposed port": (_cfg(ExposedPorts={"99999999/tcp": {}}), "is not PORT[/PROTO]"),
    "absurd blob size": (_manifest(lambda m: m["layers"][0].update(size=10**15)), "over the cap of"),  # type: ignore[index,union-attr]
    "negative blob size": (_manifest(lambda m: m["layers"][0].update(size=-1)), "is not a byte count"),  # type: ignore[index,union-attr]
    "wrong blob size": (_manifest(lambda m: m["layers"][0].update(size=12)), "the manifest says 12"),  # type: ignore[index,union-attr]
    "a digest that is a path": (_manifest(lambda m: m["layers"][0].update(digest="sha256:../../../etc/passwd")),  # type: ignore[index,union-attr]
                                "is not a sha256/sha512 digest"),
    "unknown layer media type": (_manifest(lambda m: m["layers"][0].update(mediaType="text/html")),  # type: ignore[index,union-attr]
                                 "is not a layer type"),
    "too many layers": (_manifest(lambda m: m.update(layers=m["layers"] * 200)), "has more than 128 entries"),  # type: ignore[index,operator]
    "config that is not JSON": (_raw_cfg("not json"), "is not a JSON object"),
    "deeply nested JSON": (_nested(100_000), "index.json is not valid JSON"),
    "not a linux image": (_raw_cfg({**ob.config([ob.sha256(GOOD)]), "os": "windows"}), "os 'windows' is not linux"),
    "docker-archive layer path with ..": (
        _docker([GOOD], layer_paths=["../../canary/secret"]), "is not a path inside the archive"),
    "docker-archive diff_id mismatch": (_docker([GOOD], cfg=ob.config([ob.sha256(b"x")])), "rootfs.diff_ids says"),
    "docker-archive symlink loop": (lambda c, s: _docker_loop(s), "is missing from the archive"),
}


def _docker_loop(src: Path) -> Path:
    """A docker-archive whose one layer is a symlink to a symlink back to it."""
    cfg = json.dumps(ob.config([ob.sha256(GOOD)])).encode()
    manifest = json.dumps([{"Config": "c.json", "RepoTags": ["x:1"], "Layers": ["a/layer.tar"]}]).encode()
    return ob.tar_files(src.with_suffix(".tar"), {"c.json": cfg, "manifest.json": manifest},
                        (("a/layer.tar", "../b/layer.tar"), ("b/layer.tar", "../a/layer.tar")))


@pytest.mark.parametrize("case", sorted(CORPUS))
def test_a_hostile_archive_is_one_line_exit_2_and_touches_nothing(case: str, world, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    canary, src, unchanged = world
    build, expected = CORPUS[case]
    monkeypatch.setenv("ISOBENCH_IMAGE_MAX_LAYER_MIB", "1")
    source = build(canary, src)
    rc, err = _import(capsys, source)
    assert rc == 2, err
    assert err.startswith("isobench: error: ") and err.count("\n") == 1, err
    assert expected in err, err
    unchanged()


def test_entries_over_the_entry_cap_are_refused(world, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    canary, src, unchanged = world
    from runtimes.image.model import ImageError
    from runtimes.image.streams import Caps
    write_oci(src, [layer(*(reg(f"f{i}", b"") for i in range(20)))])
    with pytest.raises(ImageError, match="more than 10 entries"):
        Store(tmp_path / "cache" / "images", Caps(entries=10)).import_(src, name="x")
    unchanged()


@pytest.mark.parametrize("case", ["replace a symlink to a host file", "devices", "hardlink then replace"])
def test_what_looks_hostile_but_is_not_imports_and_touches_nothing(case: str, world, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A later entry *replaces* a symlink (never writes through it); devices are skipped."""
    canary, src, unchanged = world
    layers = {
        "replace a symlink to a host file": layer(sym("f", str(canary / "secret")), reg("f", b"mine")),
        "devices": layer(dev("null"), dev(str(canary.relative_to("/")) + "/dev", 8, 1, block=True)),
        "hardlink then replace": layer(reg("a", b"1"), hard("b", "a"), reg("a", b"2")),
    }
    write_oci(src, [layers[case]])
    store = Store(tmp_path / "cache" / "images")
    image = store.import_(src, name="x")
    top = image.layers[0]
    if case.startswith("replace"):
        assert (top / "f").read_bytes() == b"mine" and not (top / "f").is_symlink()
    elif case == "devices":
        assert store.record(image)["skipped_devices"] == 2 and os.listdir(top) == []
    else:
        assert ((top / "a").read_bytes(), (top / "b").read_bytes()) == (b"2", b"1")
    store.remove("x")
    unchanged()
