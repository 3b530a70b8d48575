"""What a killed matrix run can leave, found by name: guest processes and temporary directories.

A guest's processes die with the harness (PID namespace + PDEATHSIG, see
``guest``), so this sweep normally finds nothing to kill; the temporary
directories (``/tmp/isobench-guest-NAME-PID-…``) do outlive a SIGKILL and are
removed once the PID in their name is gone.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import tempfile
from pathlib import Path

from runtimes.naming import PREFIX, pid_alive

#: the guest name prefix: QEMU's ``-name``, temporary directories, the guest hostname
GUEST_PREFIX = f"{PREFIX}-guest-"

_TMP = re.compile(rf"^{re.escape(GUEST_PREFIX)}(?P<name>.+)-(?P<pid>\d+)-[^-]+$")


def guest_processes(run_id: str | None = None) -> list[int]:
    """PIDs whose command line names one of our guests (QEMU's ``-name``, vng's ``--name``)."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = Path(entry.path, "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        names = [a.decode(errors="replace") for a in argv if a.startswith(GUEST_PREFIX.encode())
                 or b"=" + GUEST_PREFIX.encode() in a or b"," + GUEST_PREFIX.encode() in a]
        if names and (run_id is None or any(run_id in n for n in names)):
            found.append(int(entry.name))
    return found


def stale_dirs(run_id: str | None = None, tmp: Path | None = None) -> list[Path]:
    out = []
    for d in (tmp or Path(tempfile.gettempdir())).glob(f"{GUEST_PREFIX}*"):
        m = _TMP.match(d.name)
        if m and d.is_dir() and not pid_alive(int(m["pid"])) and (run_id is None or run_id in m["name"]):
            out.append(d)
    return out


def cleanup_leftovers(run_id: str | None = None) -> list[str]:
    removed = []
    for pid in guest_processes(run_id):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
            removed.append(f"guest process {pid}")
    for d in stale_dirs(run_id):
        shutil.rmtree(d, ignore_errors=True)
        removed.append(f"guest directory {d}")
    return removed
