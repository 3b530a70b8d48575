"""Page-cache sharing: mincore of an image's files, the unresolved verdicts, and density's new rows
for N instances of one image (runtimes.syscalls.mincore, runtimes.image.pagecache,
harness.measure.sharing/density)."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import pytest

from harness.measure.density import unresolved
from harness.stats.slope import Slope
from runtimes.image import pagecache
from runtimes.image.model import Image
from tests import imagekit


def test_mincore_counts_a_files_pages_in_the_page_cache(tmp_path: Path) -> None:
    f = tmp_path / "data"
    f.write_bytes(os.urandom(64 * pagecache.PAGE + 100))
    fd = os.open(f, os.O_RDONLY)
    try:
        os.fsync(fd)  # clean pages only: dropped by the advice below (this file's, nobody else's)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        before, size = pagecache.file_resident(f)
        os.pread(fd, 16 * pagecache.PAGE, 0)  # read in 16 pages (readahead may add a few)
        after, _ = pagecache.file_resident(f)
    finally:
        os.close(fd)
    assert size == 64 * pagecache.PAGE + 100
    assert before < after and after >= 16 * pagecache.PAGE
    assert pagecache.file_resident(tmp_path / "missing") == (0, 0)
    (tmp_path / "empty").write_bytes(b"")
    assert pagecache.file_resident(tmp_path / "empty") == (0, 0)


def test_a_layer_file_hardlinked_twice_counts_once(tmp_path: Path) -> None:
    layer = tmp_path / "layer"
    layer.mkdir()
    (layer / "a").write_bytes(b"x" * 10_000)
    os.link(layer / "a", layer / "b")
    (layer / "link").symlink_to("a")
    r = pagecache.resident([layer])
    assert (r.files, r.total) == (1, 10_000) and 0 < r.resident <= 10_000


@pytest.mark.parametrize(("fit", "words"), [
    (Slope(-4.66, -6.2, -2.6, 0, 20), "not resolved: negative by the cgroup's charge"),
    (Slope(2.0, -1.0, 9.0, 0, 20), "wider than the figure"),
    (Slope(12.0, 10.0, 14.0, 0, 20), None),
])
def test_a_negative_or_wide_slope_is_not_a_result(fit: Slope, words: str | None) -> None:
    why = unresolved(fit, "the cgroup's charge")
    assert why is None if words is None else words in (why or "")


DENSITY = """
[scenario]
backends = ["container", "bare"]
repetitions = 2
warmups = 0
timeout = 20
[workload.web]  # ready by a log line: bare shares the host's network, two servers cannot share a port
image = "kit"
command = ["/app/run.sh", "/bin/busybox", "sleep", "60"]
ready = { log = "app says" }
stop = "KILL"
[[experiment]]
measurement = "density"
workloads = ["web"]
instances = 2
settle = 0.2
"""


@pytest.mark.privileged
def test_density_of_an_image_reads_its_page_cache_at_every_point(tmp_path: Path, run_id: str,
                                                                 no_leftovers) -> None:
    from harness import results, runner, scenario
    from runtimes.image import resolve

    image: Image = imagekit.make(tmp_path / "image")
    undo = resolve.use(lambda ref: image)
    try:
        sc = scenario.parse(tomllib.loads(DENSITY), "density.toml", DENSITY)
    finally:
        undo()
    run_dir = runner.run(sc, tmp_path / "results", progress=False, run_id=run_id)
    rows = results.read_samples(run_dir)
    assert [r for r in rows if r["status"] != "ok"] == []
    for backend in ("container", "bare"):
        mine = [r for r in rows if r["backend"] == backend]
        metrics = [r["metric"] for r in mine]
        assert metrics.count("image_resident") == metrics.count("cached") == 2 * 3  # k = 0, 1, 2 per ramp
        # two ramps: pooled slopes without an interval (harness.stats.slope wants 3), and said so
        assert {"image_resident_pooled", "cached_pooled", "image_resident_held", "image_size",
                "density_resolved"} <= set(metrics) and "image_resident_pooled_lo" not in metrics
        pooled = next(r for r in mine if r["metric"] == "image_resident_pooled")
        assert "mincore" in pooled["note"] and "ramps" in pooled["note"]
        size = next(r["value"] for r in mine if r["metric"] == "image_size")
        held = next(r["value"] for r in mine if r["metric"] == "image_resident_held")
        assert 0 < held <= size  # the image's pages are read through its layers' own files
    container = [r["metric"] for r in rows if r["backend"] == "container"]
    assert container.count("file_charge") == 2 * 2 and "density_charged_resolved" in container
    assert "file_charge" not in [r["metric"] for r in rows if r["backend"] == "bare"]  # no cgroup of its own
    from harness.report import findings, model

    lines = [line for f in findings.findings(model.load([run_dir])) if f.title.startswith("Density") for line in f.lines]
    assert any(line.startswith("container: the image's pages in the page cache") for line in lines), lines
    assert any(line.startswith("bare (chroot): the image's pages") for line in lines), lines
