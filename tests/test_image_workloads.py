"""Image workloads as data: readiness, the process an image runs, its user, and the scenario's
``[workload.NAME]`` tables (runtimes.workloads, runtimes.image.workload, harness.scenario)."""

from __future__ import annotations

import signal
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import scenario
from runtimes.image import layers, resolve
from runtimes.image.model import Image, ImageConfig, ImageError
from runtimes.image.user import resolve as resolve_user
from runtimes.image.workload import ImageWorkload, from_table, signal_number
from runtimes.workloads import Ready, Workload
from tests import imagekit


def _plain_image(tmp_path: Path, **config: object) -> Image:
    """One plain layer (no whiteouts: no root needed) with a passwd and a group file."""
    layer = tmp_path / "layer"
    (layer / "etc").mkdir(parents=True)
    (layer / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\nweb:x:33:33:web:/var/www:/bin/sh\n"
                                          "# a comment\nbroken-line\n")
    (layer / "etc" / "group").write_text("root:x:0:\nweb:x:33:\nlogs:x:4:web,other\nstaff:x:50:other\n")
    (layer / "tmp").mkdir()
    cfg = ImageConfig(**{"entrypoint": ("/bin/app",), "cmd": ("--port", "80"), "env": {"PATH": "/bin", "A": "1"},
                         "workdir": "/srv", **config})  # type: ignore[arg-type]
    return Image("plain", "sha256:" + "a" * 64, "sha256:" + "b" * 64, (layer,), ("sha256:" + "c" * 64,), cfg)


@pytest.mark.parametrize(("raw", "ready"), [
    ("exit", Ready("exit")),
    ({"log": "Ready to accept"}, Ready("log", pattern="Ready to accept")),
    ({"tcp": 6379}, Ready("tcp", port=6379)),
    ({"http": "8000/healthz"}, Ready("http", port=8000, path="/healthz")),
    ({"http": "8000"}, Ready("http", port=8000, path="/")),
])
def test_readiness_parses(raw: object, ready: Ready) -> None:
    assert Ready.parse(raw) == ready


@pytest.mark.parametrize(("raw", "words"), [
    ("ready", "must be"), ({"tcp": 0}, "between 1 and 65535"), ({"tcp": "80"}, "port number"),
    ({"http": "x/y"}, "PORT/PATH"), ({"log": "("}, "bad regular expression"), ({"udp": 53}, "unknown readiness"),
    ({"tcp": 1, "http": "2/"}, "one of"), ({"tcp": True}, "port number"),
])
def test_bad_readiness_is_one_clear_error(raw: object, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        Ready.parse(raw)


def test_catalog_workloads_keep_their_marker() -> None:
    noop, idle = Workload("noop"), Workload("idle")
    assert noop.ready.kind == idle.ready.kind == "marker" and noop.image is None and noop.process is None
    assert noop.exits_by_itself and not idle.exits_by_itself
    assert idle.stop_signal is None and idle.describe()["kind"] == "catalog"


def test_command_and_args_follow_kubernetes(tmp_path: Path) -> None:
    img = _plain_image(tmp_path)
    assert ImageWorkload("a", img).argv() == ["/bin/app", "--port", "80"]
    assert ImageWorkload("a", img, args=("--port", "81")).argv() == ["/bin/app", "--port", "81"]
    assert ImageWorkload("a", img, command=("/bin/other",)).argv() == ["/bin/other"]
    assert ImageWorkload("a", img, command=("/bin/sh",), args=("-c", "x")).argv() == ["/bin/sh", "-c", "x"]
    with pytest.raises(ValueError, match="no Entrypoint or Cmd"):
        ImageWorkload("a", _plain_image(tmp_path / "2", entrypoint=(), cmd=()))


def test_the_process_is_resolved_once_from_the_image(tmp_path: Path) -> None:
    img = _plain_image(tmp_path, user="web", stop_signal="SIGQUIT")
    wl = ImageWorkload("a", img, env={"A": "2", "B": "3"}, ready=Ready("tcp", port=80))
    p = wl.process
    assert (p.uid, p.gid, p.groups, p.cwd) == (33, 33, (4,), "/srv")
    assert p.env == {"PATH": "/bin", "A": "2", "B": "3", "HOME": "/var/www"}
    assert wl.stop_signal == signal.SIGQUIT and not wl.exits_by_itself
    assert wl.missing_mountpoints() == ("proc", "dev", "sys")  # the image has /tmp
    described = wl.describe()
    assert described["digest"] == img.digest and described["uid"] == 33 and described["ready"] == "tcp 80"
    # the image's PATH wins over the default; without one, Docker's default applies
    assert ImageWorkload("b", _plain_image(tmp_path / "2", env={})).process.env["PATH"].startswith("/usr/local")


@pytest.mark.parametrize(("user", "ids"), [
    ("", (0, 0, ())), ("0", (0, 0, ())), ("web", (33, 33, (4,))), ("33", (33, 33, (4,))),
    ("web:staff", (33, 50, (4,))), ("1234", (1234, 0, ())), ("1234:77", (1234, 77, ())), ("web:0", (33, 0, (4,))),
])
def test_user_forms(tmp_path: Path, user: str, ids: tuple[int, int, tuple[int, ...]]) -> None:
    got = resolve_user(_plain_image(tmp_path).layers, user)
    assert (got.uid, got.gid, got.groups) == ids


@pytest.mark.parametrize(("user", "words"), [
    ("nobody", "not in the image's /etc/passwd"), ("web:nogroup", "not in the image's /etc/group"),
    (":0", "names no user"), ("99999999999", "out of range"),
])
def test_bad_users_are_clear_errors(tmp_path: Path, user: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        resolve_user(_plain_image(tmp_path).layers, user)


def test_signals_by_name_or_number() -> None:
    assert signal_number("SIGTERM") == signal_number("term") == signal_number("15") == signal_number(15) == 15
    for bad in ("SIGNOPE", 999, 1.5):
        with pytest.raises(ValueError):
            signal_number(bad)  # type: ignore[arg-type]


@pytest.mark.privileged
def test_layers_are_read_as_the_overlay_shows_them(tmp_path: Path) -> None:
    img = imagekit.make(tmp_path)
    assert layers.lookup(img.layers, "www/index.html") == img.layers[0] / "www/index.html"
    assert layers.lookup(img.layers, "junk/gone.txt") is None  # a whiteout above
    assert layers.lookup(img.layers, "opq/old.txt") is None  # an opaque directory above
    assert layers.lookup(img.layers, "opq/new.txt") == img.layers[1] / "opq/new.txt"
    assert layers.exists(img.layers, "junk") and not layers.exists(img.layers, "proc")
    assert layers.lookup(img.layers, "../etc/passwd") is None
    assert "app:x:1000" in (layers.read_text(img.layers, "etc/passwd") or "")
    ids = resolve_user(img.layers, "app")
    assert (ids.uid, ids.gid, ids.groups, ids.home) == (1000, 1000, (2000,), "/home/app")


@pytest.mark.privileged  # (a whiteout is a 0/0 device node)
def test_one_walk_of_the_merged_view_serves_the_reader_and_the_stores_link_check(tmp_path: Path) -> None:
    from runtimes.image.intake import symlink_below

    img = imagekit.make(tmp_path)
    above = tmp_path / "layer2"
    (above / "www").mkdir(parents=True)
    (above / "etc").symlink_to("/etc")  # a link where the lower layer has a directory
    stack = [*img.layers, above]
    top_first = stack[::-1]
    assert [t for _, t in layers.merged(top_first, ("www", "index.html"))] == [above, img.layers[0]]
    assert layers.lookup(stack, "www/index.html") == img.layers[0] / "www/index.html"  # through a merged dir
    assert layers.lookup(stack, "etc/passwd") is None  # never beneath a link (a host path)
    assert symlink_below(top_first, ("etc", "passwd")) == "etc"  # a layer writing there is refused
    assert symlink_below(top_first, ("www", "x")) is None and symlink_below(top_first, ("junk", "gone.txt")) is None


# -- the scenario's [workload.NAME] tables -------------------------------------------------
@pytest.fixture
def images(tmp_path: Path) -> Iterator[dict[str, Image]]:
    known = {"plain": _plain_image(tmp_path)}

    def find(ref: str) -> Image:
        if ref not in known:
            raise ImageError(f"no image {ref!r} (isobench image ls)")
        return known[ref]

    undo = resolve.use(find)
    yield known
    undo()


SCENARIO = """
[scenario]
backends = ["bare", "container"]
[workload.web]
image = "plain"
ready = { http = "80/" }
env = { MODE = "test" }
[[experiment]]
measurement = "startup"
workloads = ["noop", "web"]
[[experiment]]
measurement = "memory"
workloads = ["idle", "web"]
[[experiment]]
measurement = "mem_limit"
workloads = ["web"]
grid = { limit_mib = [64, 128] }
"""


def test_a_scenario_runs_image_workloads_beside_the_catalog(images: dict[str, Image]) -> None:
    sc = scenario.parse(tomllib.loads(SCENARIO), "s.toml", SCENARIO)
    web = [c for c in sc.cases if c.workload.name == "web"]
    assert [c.measurement for c in web] == ["startup", "memory", "mem_limit", "mem_limit"]
    assert all(isinstance(c.workload, ImageWorkload) and c.workload.image is images["plain"] for c in web)
    assert web[0].workload.process.env["MODE"] == "test"  # type: ignore[union-attr]
    assert [c.limits.memory_mib for c in web[2:]] == [64, 128] and web[2].workload.params == {}


@pytest.mark.parametrize(("change", "words"), [
    (lambda t: t.replace('image = "plain"', 'image = "missing"'), "no image 'missing'"),
    (lambda t: t.replace('image = "plain"', 'imag = "plain"'), "unknown key"),
    (lambda t: t.replace("[workload.web]", "[workload.idle]"), "is a catalog workload"),
    (lambda t: t.replace('env = { MODE = "test" }', 'env = { MODE = 1 }'), "env must be a table of strings"),
    (lambda t: t.replace('ready = { http = "80/" }', 'ready = "now"'), "ready: must be"),
    (lambda t: t.replace('workloads = ["web"]\ngrid = { limit_mib = [64, 128] }',
                         'workloads = ["web"]\ngrid = { limit_mib = [64], mib = [32] }'), "unknown grid key"),
    (lambda t: t.replace('workloads = ["web"]\ngrid', 'workloads = ["web", "mem"]\ngrid'), "experiment of their own"),
    (lambda t: t.replace('workloads = ["noop", "web"]', 'workloads = ["noop", "webb"]'), "unknown workload 'webb'"),
])
def test_bad_image_workloads_are_one_line_errors(images: dict[str, Image], change, words: str) -> None:
    text = change(SCENARIO)
    with pytest.raises(scenario.ScenarioError, match=words) as e:
        scenario.parse(tomllib.loads(text), "s.toml", text)
    assert "\n" not in str(e.value) and str(e.value).startswith("s.toml: ")


def test_from_table_checks_its_values(tmp_path: Path) -> None:
    img = _plain_image(tmp_path)
    for table, words in (({"command": "app"}, "list of strings"), ({"grace": "5"}, "number of seconds"),
                         ({"grace": -1}, "between 0 and 3600"), ({"workdir": "rel"}, "absolute path"),
                         ({"stop": 1.5}, "signal name or number"), ({"user": 0}, "must be a string")):
        with pytest.raises(ValueError, match=words):
            from_table("w", table, img)


def test_readiness_in_words_round_trips_and_an_images_label_is_the_default(tmp_path: Path) -> None:
    for r in (Ready("exit"), Ready("tcp", port=6379), Ready("http", port=8000, path="/x"), Ready("log", pattern="up")):
        assert Ready.from_words(r.describe()) == r
    with pytest.raises(ValueError, match="unknown readiness"):
        Ready.from_words("udp 53")
    labelled = _plain_image(tmp_path, labels={"org.isobench.ready": "tcp 6379"})
    assert from_table("w", {}, labelled).ready == Ready("tcp", port=6379)
    assert from_table("w", {"ready": "exit"}, labelled).ready == Ready("exit")
    assert from_table("w", {}, _plain_image(tmp_path / "2")).ready == Ready("exit")


def test_a_backend_that_runs_no_image_is_refused_before_the_run(images: dict[str, Image]) -> None:
    import dataclasses

    import runtimes
    from tests import toy_backend

    undo = runtimes.register(dataclasses.replace(toy_backend.DECLARATION, images=False))
    try:
        text = SCENARIO.replace('backends = ["bare", "container"]', 'backends = ["bare", "toy"]', 1)
        with pytest.raises(scenario.ScenarioError, match="toy runs no image workload"):
            scenario.parse(tomllib.loads(text), "s.toml", text)
        limited = text.replace('workloads = ["noop", "web"]', 'workloads = ["noop", "web"]\nbackends = ["bare"]')
        limited = limited.replace('workloads = ["idle", "web"]', 'workloads = ["idle", "web"]\nbackends = ["bare"]')
        limited = limited.replace('workloads = ["web"]\ngrid', 'workloads = ["web"]\nbackends = ["bare"]\ngrid')
        assert scenario.parse(tomllib.loads(limited), "s.toml", limited).cases
    finally:
        undo()
