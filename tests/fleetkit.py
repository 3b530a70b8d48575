"""Helpers of the isobench fleet tests (tests/test_fleet_*.py): scenarios, inventories of this
machine, running ``fleet run``, and the check that a fleet left nothing behind."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from harness.fleet import leftovers

ROOT = Path(__file__).resolve().parents[1]

TINY = """[scenario]
name = "fleet-test"
backends = ["bare"]
repetitions = 3
warmups = 0
timeout = 30

[[experiment]]
measurement = "startup"
workloads = ["noop"]
"""
#: a scenario that runs until it is stopped (for Ctrl-C): a thousand idle memory samples
LONG = TINY.replace('measurement = "startup"\nworkloads = ["noop"]',
                    'measurement = "memory"\nworkloads = ["idle"]\nrepetitions = 1000\nsettle = 0.5')


def local_host(**extra: object) -> dict[str, object]:
    return {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
            "isobench_python": sys.executable, "isobench_doctor_args": "--fix --no-probe", **extra}


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_inventory(path: Path, hosts: dict[str, dict[str, object]]) -> Path:
    path.write_text(json.dumps({"all": {"children": {"lab": {"hosts": hosts}}}}, indent=1))
    return path


def fleet(*argv: str | Path, timeout: float = 240, env: dict[str, str] | None = None
          ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness", "fleet", "run", *map(str, argv)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, check=False,
                          env={**os.environ, **(env or {})})


def fleet_dir(out: subprocess.CompletedProcess[str]) -> Path:
    return Path(out.stdout.strip().splitlines()[-1])


def assert_nothing_left(fleet_id: str) -> None:
    """No working directory, private directory or SSH master of this fleet, and the harness's
    own cleanup finds nothing of it either."""
    tmp = Path(tempfile.gettempdir())
    assert [p.name for p in tmp.glob(f"isobench-fleet*{fleet_id}*")] == []
    assert all(fleet_id not in _cmdline(str(pid)) for pid in leftovers.ssh_masters([tmp]))
    r = subprocess.run([sys.executable, "-m", "harness", "cleanup", "--run-id", f"fleet-{fleet_id}"], cwd=ROOT,
                       capture_output=True, text=True, check=True)
    assert r.stdout.strip().endswith("removed 0 item(s)"), r.stdout
    procs = [p.name for p in Path("/proc").iterdir() if p.name.isdigit() and f"fleet-{fleet_id}" in _cmdline(p.name)]
    assert procs == []


def _cmdline(pid: str) -> str:
    """A process's command line, "" once it is gone (any process of the host may exit while /proc is read)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_text(errors="replace")
    except OSError:
        return ""
