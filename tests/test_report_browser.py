"""report.html as a reader sees it: rendered by headless Chromium at 1280 px wide.

Checked from the rendered page, not the HTML text: the findings and the
headline chart are within the first 1000 px, host metadata and statistics are
folded (closed ``<details>``, their tables not rendered), and every image
loaded (a broken data URI has no natural width).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import report
from tests import browser, synth
from tests.conftest import require

ROOT = Path(__file__).resolve().parent.parent
FOLD = 1000


@pytest.fixture(scope="module", params=["stored-default-run", "synthetic-with-peers"])
def page(request, tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp(request.param)
    if request.param == "stored-default-run":
        run = ROOT / "tests" / "data" / "runs" / "dev-host-default"
    else:
        run = synth.make_run(tmp / "results", run_id="run-peers", reps=8,
                             backends=("bare", "container", "oci:runc", "vm", "qemu"))
    return report.build([run], tmp / "report") / "report.html"


def test_findings_and_headline_chart_above_the_fold(page):
    require(browser.chromium() is not None, "chromium is not installed (isobench doctor --fix installs it)")
    seen = browser.probe(page, height=FOLD)
    assert seen["findings"] is not None and seen["findings"]["top"] < FOLD
    assert seen["findings_list"] is not None and seen["findings_list"]["bottom"] < FOLD, seen["findings_list"]
    head = seen["headline"]
    assert head is not None, "no headline chart on the page"
    assert head["height"] > 200 and head["bottom"] <= FOLD, head


def test_host_metadata_and_statistics_are_folded(page):
    require(browser.chromium() is not None, "chromium is not installed (isobench doctor --fix installs it)")
    seen = browser.probe(page)
    assert not seen["host_open"] and not seen["host_table_shown"]
    assert seen["stats"], "no statistics tables on the page"
    assert all(not s["open"] and not s["shown"] for s in seen["stats"]), seen["stats"]
    assert not seen["warnings_open"]


def test_every_image_loads(page):
    require(browser.chromium() is not None, "chromium is not installed (isobench doctor --fix installs it)")
    images = browser.probe(page)["images"]
    assert len(images) >= 9  # the headline chart and every section's charts
    broken = [i["alt"] for i in images if not (i["complete"] and i["width"] > 100 and i["height"] > 100)]
    assert not broken, f"images that did not load: {broken}"


def test_the_probe_sees_unfolded_content_and_broken_images(tmp_path, page):
    """The checks above can fail: an open <details> is seen as shown, a broken image as not loaded."""
    require(browser.chromium() is not None, "chromium is not installed (isobench doctor --fix installs it)")
    bad = tmp_path / "report.html"
    text = page.read_text().replace('<details id="host">', '<details id="host" open>', 1)
    text = text.replace('src="data:image/png;base64,', 'src="data:image/png;base64,AAAA', 1)
    bad.write_text(text)
    seen = browser.probe(bad)
    assert seen["host_open"] and seen["host_table_shown"]
    assert seen["images"][0]["width"] == 0
