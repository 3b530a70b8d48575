"""What a killed ``isobench fleet`` can leave on the controller, found by name.

* its private directory (``/tmp/isobench-fleetctl-ID-PID-…``: the bundle, Ansible's
  home and control sockets) and a lab's (``/tmp/isobench-fleetlab-PID-…``: keys,
  inventory), removed once the PID in the name is gone;
* SSH masters Ansible left open on a control socket in such a directory
  (``ssh: /tmp/isobench-fleetctl-…/cp/… [mux]``), killed with it (they would exit
  by themselves after ControlPersist's 60 s);
* with ``--run-id fleet-ID``, the working directories hosts of that fleet used on
  this machine (``/tmp/isobench-fleet-ID-HOST``), which each host's own cleanup
  step removes unless the fleet was killed.

The guests of a lab are ``isobench-guest-…`` processes: ``harness.matrix.leftovers`` sweeps them.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import tempfile
from pathlib import Path

from harness.fleet.play import PRIVATE_ROOT
from harness.matrix.leftovers import pid_alive
from runtimes.naming import of_run

#: the controller's private directory of a fleet (``ctl``) or of a lab
PRIVATE = re.compile(r"^isobench-fleet(?:ctl|lab)-(?:(?P<fleet>\d{8}-\d{6}-[0-9a-f]{4})-)?(?P<pid>\d+)-[^-]+$")
#: the run id of a whole fleet, as ``isobench cleanup --run-id`` takes it
FLEET_RUN_ID = re.compile(r"^fleet-\d{8}-\d{6}-[0-9a-f]{4}$")
#: a fleet host's working directory on this machine: ``isobench-<its cleanup id>``
WORKDIR = re.compile(r"^isobench-fleet-(?P<fleet>\d{8}-\d{6}-[0-9a-f]{4})-(?P<host>[A-Za-z0-9_.]+)$")


def stale_private_dirs(run_id: str | None = None, tmp: Path | None = None) -> list[Path]:
    """Private directories whose fleet process is gone (of fleet ``fleet-ID`` only, with ``run_id``):
    a fleet's in ``/tmp`` (``play.PRIVATE_ROOT``), a lab's in TMPDIR."""
    out = []
    for d in (p for root in _roots(tmp) for p in root.glob("isobench-fleet*-*")):
        m = PRIVATE.match(d.name)
        if m and d.is_dir() and not pid_alive(int(m["pid"])) and (run_id is None or run_id == f"fleet-{m['fleet']}"):
            out.append(d)
    return out


def workdirs(run_id: str, tmp: Path | None = None) -> list[Path]:
    """Working directories on this machine of the hosts of fleet ``run_id`` (``fleet-ID``).  A
    host's own cleanup (``--run-id fleet-ID-HOST``, run from inside its working directory, which it
    removes next) does not sweep them."""
    if not FLEET_RUN_ID.match(run_id):
        return []
    return [d for root in _roots(tmp) for d in root.glob("isobench-fleet-*")
            if WORKDIR.match(d.name) and of_run(d.name, run_id) and d.is_dir()]


def _roots(tmp: Path | None) -> list[Path]:
    """Where to look: TMPDIR (a lab's directory) and /tmp (a fleet's, and hosts' default workdir)."""
    return [tmp] if tmp else list(dict.fromkeys([Path(tempfile.gettempdir()), PRIVATE_ROOT]))


def ssh_masters(dirs: list[Path]) -> list[int]:
    """PIDs of SSH control masters listening on a socket inside ``dirs``."""
    marks = [f"{d}/".encode() for d in dirs]
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            cmdline = Path(entry.path, "cmdline").read_bytes()
        except OSError:
            continue
        if cmdline.startswith(b"ssh: ") and any(m in cmdline for m in marks):
            found.append(int(entry.name))
    return found


def cleanup_leftovers(run_id: str | None = None) -> list[str]:
    removed = []
    stale = stale_private_dirs(run_id)
    for pid in ssh_masters(stale):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
            removed.append(f"fleet ssh master {pid}")
    for d in stale + (workdirs(run_id) if run_id else []):
        shutil.rmtree(d, ignore_errors=True)
        removed.append(f"fleet directory {d}")
    return removed
