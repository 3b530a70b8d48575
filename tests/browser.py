"""Headless Chromium (Debian's ``chromium``, installed by ``isobench doctor --fix``) for page tests.

No DevTools client is needed: the page under test gets a small script that,
once everything has loaded, measures what the test asks about and writes it as
JSON into a ``<pre id="isobench-probe">``; ``--dump-dom`` then prints the DOM
as it is after the scripts ran (``--virtual-time-budget`` lets the load event
and the script finish first).
"""

from __future__ import annotations

import html
import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

#: flags for a root, network-less, GPU-less machine; a fresh profile every time
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--virtual-time-budget=10000")
WIDTH = 1280

#: measures the page once it has loaded (positions are CSS pixels from the top of the page)
PROBE = """
<script>
window.addEventListener('load', () => {
  const rect = (el) => { if (!el) return null; const r = el.getBoundingClientRect();
    return {top: r.top + window.scrollY, bottom: r.bottom + window.scrollY, height: r.height}; };
  // a closed <details> hides its content with content-visibility, which only checkVisibility() sees
  const shown = (el) => !!el && (el.checkVisibility ? el.checkVisibility({contentVisibilityAuto: true,
                        visibilityProperty: true, opacityProperty: true}) : el.getClientRects().length > 0);
  const out = {
    findings: rect(document.getElementById('findings')),
    findings_list: rect(document.querySelector('#findings ul')),
    headline: rect(document.querySelector('#headline img')),
    host_open: !!(document.getElementById('host') || {}).open,
    host_table_shown: [...document.querySelectorAll('#host table')].some(shown),
    stats: [...document.querySelectorAll('details.stats')].map(d => ({open: d.open,
             shown: [...d.querySelectorAll('table')].some(shown)})),
    images: [...document.images].map(i => ({alt: i.alt, complete: i.complete, width: i.naturalWidth,
             height: i.naturalHeight})),
    warnings_open: !!(document.getElementById('warning-list') || {}).open,
  };
  const pre = document.createElement('pre');
  pre.id = 'isobench-probe';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>
"""


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _run(args: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    exe = chromium()
    if exe is None:
        raise FileNotFoundError("chromium is not installed (isobench doctor --fix installs it)")
    with tempfile.TemporaryDirectory(prefix="isobench-chromium-") as profile:
        return subprocess.run([exe, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True, text=True,
                              timeout=timeout, check=False)


def probe(page: Path, height: int = 1000) -> dict[str, Any]:
    """Render ``page`` (a copy with the probe script, beside it so relative links resolve) and
    return what the probe measured."""
    probed = page.with_name(f".probe-{page.name}")
    text = page.read_text()
    probed.write_text(text.replace("</body>", PROBE + "</body>") if "</body>" in text else text + PROBE)
    try:
        r = _run([f"--window-size={WIDTH},{height}", "--dump-dom", probed.resolve().as_uri()])
    finally:
        probed.unlink()
    start = r.stdout.find('<pre id="isobench-probe">')
    if start < 0:
        raise AssertionError(f"chromium did not run the probe (rc {r.returncode}): {r.stderr[-2000:]}")
    body = r.stdout[start + len('<pre id="isobench-probe">'):r.stdout.index("</pre>", start)]
    return dict(json.loads(html.unescape(body)))


def screenshot(page: Path, png: Path, height: int = 1000) -> None:
    """The top ``WIDTH`` × ``height`` pixels of ``page`` as a PNG."""
    r = _run([f"--window-size={WIDTH},{height}", f"--screenshot={png.resolve()}", page.resolve().as_uri()])
    if not png.exists():
        raise AssertionError(f"chromium wrote no screenshot (rc {r.returncode}): {r.stderr[-2000:]}")
