"""``results/fleet-<id>/fleet.json``: per host, what happened and why; what ``--resume`` repeats.

    {"schema": "isobench/fleet", "schema_version": 1, "fleet_id": "...", "status": "...",
     "inventory": "/abs/inventory.yml", "limit": null, "scenario": "scenario.toml",
     "project": {"commit": "...", "dirty": false}, "attempts": [{...}, ...],
     "hosts": {"NAME": {"dir": "NAME", "status": "completed", "step": "", "reason": "",
                        "run_id": "...", "address": "...", "connection": "ssh",
                        "port": 22, "user": "root", "cleanup": "...", "attempts": 1}}}

A host's ``status``: ``pending`` (not run yet), ``completed`` (its run directory
is ``<dir>/``), ``failed`` (``step`` and ``reason`` say where and why) or
``interrupted`` (Ctrl-C).  Written atomically after every change, so a killed
fleet leaves a manifest that ``--resume`` reads.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import re
import secrets
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from harness import results
from harness.errors import UserError

SCHEMA = "isobench/fleet"
SCHEMA_VERSION = 1
FILE = "fleet.json"
PREFIX = "fleet-"
_ID = re.compile(r"^\d{8}-\d{6}-[0-9a-f]{4}$")
STATUSES = ("pending", "completed", "failed", "interrupted")


def new_id() -> str:
    return f"{dt.datetime.now():%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def fleet_dir(results_dir: Path, fleet_id: str) -> Path:
    return results_dir / f"{PREFIX}{fleet_id}"


def resolve_id(text: str) -> str:
    """The fleet id in ``ID``, ``fleet-ID`` or a path ending in ``fleet-ID``; a ``UserError`` otherwise."""
    name = Path(text.rstrip("/")).name.removeprefix(PREFIX)
    if not _ID.match(name):
        raise UserError(f"--resume: {text!r} is not a fleet id (YYYYMMDD-HHMMSS-xxxx, as fleet run printed it)")
    return name


def is_fleet(path: Path) -> bool:
    return (path / FILE).is_file()


def new(fleet_id: str, **fields: Any) -> dict[str, Any]:
    return {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "fleet_id": fleet_id, "status": "running",
            "started": now(), "ended": None, **fields, "attempts": [], "hosts": {}}


def read(directory: Path) -> dict[str, Any]:
    path = directory / FILE
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError as e:
        raise UserError(f"{directory}: not a fleet directory (no {FILE})") from e
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"{path}: unreadable: {e}") from e
    if data.get("schema") != SCHEMA or not isinstance(data.get("hosts"), dict):
        raise UserError(f"{path}: not an isobench fleet manifest")
    if int(data.get("schema_version", 0)) > SCHEMA_VERSION:
        raise UserError(f"{path}: schema version {data['schema_version']} is newer than this isobench")
    return data


def write(directory: Path, data: dict[str, Any]) -> None:
    data["updated"] = now()
    results.write_json_atomic(directory / FILE, data)


@contextlib.contextmanager
def locked(directory: Path) -> Iterator[None]:
    """One ``fleet run`` per fleet directory at a time (a second ``--resume`` fails at once)."""
    fd = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as e:
            raise UserError(f"{directory}: another isobench fleet run is working on it") from e
        yield
    finally:
        os.close(fd)


def host_entry(data: dict[str, Any], name: str, **defaults: Any) -> dict[str, Any]:
    """The manifest's record of host ``name``, created ``pending`` when new."""
    entry: dict[str, Any] = data["hosts"].setdefault(name, {"status": "pending", "step": "", "reason": "",
                                                            "attempts": 0})
    for k, v in defaults.items():
        entry.setdefault(k, v)
    return entry


def to_repeat(data: dict[str, Any], hosts: list[str]) -> list[str]:
    """Of ``hosts``, those whose results are missing (anything but ``completed``), in order."""
    return [h for h in hosts if (data["hosts"].get(h) or {}).get("status") != "completed"]


def failed_hosts(data: dict[str, Any]) -> list[str]:
    return [h for h, e in data["hosts"].items() if e.get("status") != "completed"]


def completed_dirs(directory: Path, data: dict[str, Any]) -> list[tuple[str, Path]]:
    """(host, run directory) of every completed host, in the manifest's order."""
    return [(h, directory / str(e["dir"])) for h, e in data["hosts"].items()
            if e.get("status") == "completed" and e.get("dir")]


def runs_of(path: Path | str) -> list[tuple[str | None, Path]]:
    """(host, run directory) of every completed host of the fleet at ``path``, or ``[(None, path)]``
    for a run directory; a ``UserError`` for a fleet none of whose hosts completed."""
    p = Path(path)
    if not is_fleet(p):
        return [(None, p)]
    found = completed_dirs(p, read(p))
    if not found:
        raise UserError(f"{p}: no host of this fleet has results yet (isobench fleet run --resume "
                        f"{p.name.removeprefix(PREFIX)})")
    return [(h, d) for h, d in found]


def expand(paths: Sequence[Path | str]) -> list[Path]:
    """``paths`` with every fleet directory replaced by the run directories of its completed hosts
    (``isobench report`` and ``compare`` take a fleet where they take runs)."""
    return [d for p in paths for _, d in runs_of(p)]
