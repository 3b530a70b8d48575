"""One host's archive, arrived on the controller: unpacked safely, and labelled with its host.

The run manifest the host wrote already holds what the host knows of itself
(CPU, kernel, cgroup version, load: ``harness.metadata``); the controller adds
``fleet`` (fleet id, inventory name, address, connection), the commit it sent
(the host ran a bundle, which git cannot name) and, for a host the
inventory declares a guest (``isobench_guest``, e.g. ``{accel: tcg}`` from
``isobench fleet lab``), ``guest`` and every backend's accelerator, the keys
``isobench matrix`` writes, so reports label emulated figures the same way.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from harness import results
from harness.fleet.inventory import Host
from harness.fleet.unpack import UnsafeArchive, extract_run


def collect(archive: Path, dest: Path, run_id: str, host: Host, fleet_id: str,
            project: dict[str, Any] | None = None) -> Path:
    """Unpack ``archive`` (the host's run ``run_id``) as ``dest``, annotate it, remove the archive."""
    try:
        extract_run(archive, dest, run_id)
    finally:
        archive.unlink(missing_ok=True)
    try:
        results.read_manifest(dest)  # the host's manifest must be one (schema, version)
        annotate(dest, host, fleet_id, project or {})
    except (results.ResultsError, ValueError, TypeError) as e:
        shutil.rmtree(dest, ignore_errors=True)
        raise UnsafeArchive(f"its manifest: {e}") from e
    return dest


def annotate(run_dir: Path, host: Host, fleet_id: str, project: dict[str, Any]) -> None:
    path = run_dir / results.MANIFEST
    m: dict[str, Any] = json.loads(path.read_text())
    m["fleet"] = {"fleet_id": fleet_id, "host": host.name, **host.describe()}
    h = m.get("host")
    if isinstance(h, dict) and not h.get("commit") and project.get("commit"):
        # the host ran the bundle, not a checkout: the commit is the one the controller sent
        h["commit"], h["dirty"] = project["commit"], bool(project.get("dirty"))
    guest = host.fleet_vars.get("isobench_guest")
    if isinstance(guest, dict):
        m["guest"] = {**guest, "via": "isobench fleet"}
        accel = guest.get("accel")
        for meta in (m.get("backends") or {}).values():
            if isinstance(meta, dict) and accel:
                meta.setdefault("accel", accel)
    results.write_json_atomic(path, m)
