"""The hosts of an Ansible inventory, as Ansible itself reads them (``ansible-inventory --list``).

No format of our own: INI, YAML, a directory with ``group_vars``, a dynamic
inventory script: whatever Ansible understands, with its groups, ``ansible_host``,
``ansible_user``, ``ansible_become``.  The inventory is read once before anything
runs, so an unreadable file or a ``--limit`` that matches nothing fails with one
line, and the fleet's manifest can name every host it was asked to run on.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import UserError
from runtimes import userpaths

#: host variables the fleet's playbook reads (the rest of the inventory is Ansible's business)
FLEET_VARS = ("isobench_src", "isobench_python", "isobench_workdir", "isobench_doctor_args",
              "isobench_run_args", "isobench_timeout", "isobench_guest")


@dataclass(frozen=True)
class Host:
    name: str  # the inventory's name for it (what --limit and the manifest use)
    address: str  # ansible_host, else the name
    connection: str  # ansible_connection, else "ssh"
    port: int | None = None
    user: str | None = None
    fleet_vars: Mapping[str, Any] = field(default_factory=dict)

    @property
    def loopback(self) -> bool:
        """Reached without leaving this machine: a local connection, or an SSH address on loopback."""
        if self.connection == "local":
            return True
        try:
            return ipaddress.ip_address(self.address).is_loopback
        except ValueError:
            return False

    def describe(self) -> dict[str, Any]:
        return {"address": self.address, "connection": self.connection, "port": self.port, "user": self.user}


def _hosts_in_order(listing: Mapping[str, Any]) -> list[str]:
    """Every host of every group, in the order ``ansible-inventory`` lists them (``all`` first)."""
    seen: dict[str, None] = {}

    def visit(group: str, path: tuple[str, ...]) -> None:
        node = listing.get(group)
        if not isinstance(node, Mapping) or group in path:
            return
        for h in node.get("hosts") or ():
            seen.setdefault(str(h), None)
        for child in node.get("children") or ():
            visit(str(child), (*path, group))

    visit("all", ())
    for group, node in listing.items():  # groups not reachable from "all" (never in practice)
        if group != "_meta" and isinstance(node, Mapping):
            for h in node.get("hosts") or ():
                seen.setdefault(str(h), None)
    return list(seen)


def parse(listing: Mapping[str, Any]) -> list[Host]:
    """Hosts from ``ansible-inventory --list`` JSON (pure: unit-tested)."""
    hostvars = (listing.get("_meta") or {}).get("hostvars") or {}
    hosts = []
    for name in _hosts_in_order(listing):
        v = hostvars.get(name) or {}
        port = v.get("ansible_port") or v.get("ansible_ssh_port")
        hosts.append(Host(
            name=name,
            address=str(v.get("ansible_host") or v.get("ansible_ssh_host") or name),
            connection=str(v.get("ansible_connection") or "ssh"),
            port=int(port) if port not in (None, "") else None,
            user=(str(v["ansible_user"]) if v.get("ansible_user") else None),
            fleet_vars={k: v[k] for k in FLEET_VARS if k in v}))
    return hosts


def _ansible_inventory() -> str:
    from harness.fleet import play

    return play.tool("ansible-inventory")


def read(path: Path, limit: str | None = None) -> list[Host]:
    """The hosts ``path`` names (after ``limit``, Ansible's host pattern); a ``UserError`` if none."""
    if not path.exists():
        raise UserError(f"inventory {path}: no such file or directory")
    if not path.is_dir():  # a file Ansible would read (a FIFO or /dev/zero would hang it): a regular one
        try:
            os.close(userpaths.open_regular(path))
        except OSError as e:
            raise UserError(f"inventory {path}: cannot read: {e.strerror}") from e
    argv = [_ansible_inventory(), "-i", str(path), "--list"]
    if limit:
        argv += ["--limit", limit]
    r = subprocess.run(argv, capture_output=True, text=True, check=False, env=_quiet_env())
    if r.returncode != 0:
        raise UserError(f"inventory {path}: {_last_words(r.stderr or r.stdout)}")
    try:
        listing = json.loads(r.stdout)
    except json.JSONDecodeError as e:
        raise UserError(f"inventory {path}: ansible-inventory printed no JSON ({e})") from e
    hosts = parse(listing)
    if not hosts:
        warned = _last_words(r.stderr) if r.stderr.strip() else "no hosts"
        raise UserError(f"inventory {path}{f' --limit {limit}' if limit else ''}: no host to run on ({warned})")
    return hosts


def _quiet_env() -> dict[str, str]:
    from harness.fleet import play

    return play.environment()


_NOISE = re.compile(r"(DeprecationWarning|CryptographyDeprecationWarning|^\s*from cryptography)")


def _last_words(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not _NOISE.search(ln)]
    meaningful = [ln for ln in lines if ln.startswith(("[ERROR]", "ERROR", "[WARNING]"))] or lines
    return (meaningful[-1] if meaningful else "ansible-inventory failed")[:300]


_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
_UNSAFE_IN_RUN_ID = re.compile(r"[^A-Za-z0-9_.]+")


def slugs(names: list[str], *, in_run_id: bool = False) -> dict[str, str]:
    """A distinct, filesystem-safe name per host (pure: unit-tested).

    The directory a host's run goes to under ``fleet-<id>/`` (up to 60 characters), or, with
    ``in_run_id``, the host's part of its run ids, ``fleet-<id>-<name>-a<attempt>``: no "-" in it
    (``isobench cleanup --run-id fleet-<id>-<name>`` takes what starts with ``isobench-<that>-``,
    so no host's name may be another's followed by "-") and short enough for the 64 characters
    of a run id."""
    unsafe, width, sep = (_UNSAFE_IN_RUN_ID, 30, "_") if in_run_id else (_UNSAFE, 60, "-")
    out: dict[str, str] = {}
    taken: set[str] = set()
    for name in names:
        base = unsafe.sub("_", name).strip("._") or "host"
        slug, n = base[:width], 2
        while slug in taken:
            slug, n = f"{base[:width - 4]}{sep}{n}", n + 1
        taken.add(slug)
        out[name] = slug
    return out
