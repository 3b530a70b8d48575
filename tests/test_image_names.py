"""Image names and the strict config parser: pure logic, no root needed."""

from __future__ import annotations

import json

import pytest

from runtimes.image import names, oci
from runtimes.image.model import ImageError


@pytest.mark.parametrize("name, full", [
    ("redis", "redis:latest"), ("redis:7", "redis:7"), ("library/redis:7.0-alpine", "library/redis:7.0-alpine"),
    ("localhost:5000/a/b", "localhost:5000/a/b:latest"), ("reg.example.org/x_y/z__w:v1.2", "reg.example.org/x_y/z__w:v1.2"),
])
def test_valid_names_get_a_default_tag(name: str, full: str) -> None:
    assert names.normalise(name) == full


@pytest.mark.parametrize("name", ["", "Redis", "re dis", "a//b", "/a", "a/", "x:", "x:-tag", "a@sha256:" + "0" * 64,
                                  "a" * 300, "x:" + "t" * 129, "a..b"])
def test_invalid_names_are_refused(name: str) -> None:
    with pytest.raises(ImageError, match="image name"):
        names.normalise(name)


def test_digests_and_prefixes() -> None:
    d = "sha256:" + "ab" * 32
    assert names.check_digest(d, "x") == d and names.short(d) == "ab" * 6
    for bad in ("sha256:" + "AB" * 32, "md5:00", "sha256:../../x", 5):
        with pytest.raises(ImageError, match="is not a sha256/sha512 digest"):
            names.check_digest(bad, "x")
    assert names.looks_like_digest_prefix("abcd") and names.looks_like_digest_prefix("sha256:abcd")
    assert not names.looks_like_digest_prefix("abc") and not names.looks_like_digest_prefix("redis")


def _config(**runtime: object) -> bytes:
    return json.dumps({"os": "linux", "architecture": "amd64", "rootfs": {"type": "layers", "diff_ids": []},
                       "config": runtime}).encode()


def test_the_config_becomes_an_image_config() -> None:
    parsed = oci.parse_config(_config(Entrypoint=["/e"], Cmd=["c"], Env=["A=1", "B=x=y", "A=2"], WorkingDir="/w",
                                      User="app", StopSignal="SIGINT", ExposedPorts={"80/tcp": {}},
                                      Labels={"k": "v"}), 0)
    c = parsed.config
    assert (c.argv(), dict(c.env), c.workdir, c.user, c.stop_signal) == (("/e", "c"), {"A": "2", "B": "x=y"}, "/w",
                                                                          "app", "SIGINT")
    assert (c.exposed_ports, dict(c.labels), parsed.architecture) == (("80/tcp",), {"k": "v"}, "amd64")
    empty = oci.parse_config(_config(Env=None, Cmd=None, WorkingDir=""), 0).config
    assert (empty.argv(), dict(empty.env), empty.workdir) == ((), {}, "/")
