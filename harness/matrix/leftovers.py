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

from runtimes.naming import PREFIX

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


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (a process of another user counts too)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stale_dirs(run_id: str | None = None, tmp: Path | None = None) -> list[Path]:
    out = []
    for d in (tmp or Path(tempfile.gettempdir())).glob(f"{GUEST_PREFIX}*"):
        m = _TMP.match(d.name)
        if m and d.is_dir() and not pid_alive(int(m["pid"])) and (run_id is None or run_id in m["name"]):
            out.append(d)
    return out


def _ppid(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def _orphaned(pid: int, guests: set[int]) -> bool:
    """Whether the harness above guest process ``pid`` is gone: the first ancestor that is not
    itself a guest process is PID 1 (what orphans are given to), not a harness."""
    seen = set()
    while pid in guests and pid not in seen:
        seen.add(pid)
        pid = _ppid(pid)
    return pid <= 1


def cleanup_leftovers(run_id: str | None = None) -> list[str]:
    removed = []
    guests = guest_processes(run_id)
    for pid in guests:
        if not _orphaned(pid, set(guests)):  # a live run's guest (its harness is its ancestor)
            continue
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
            removed.append(f"guest process {pid}")
    for d in stale_dirs(run_id):
        shutil.rmtree(d, ignore_errors=True)
        removed.append(f"guest directory {d}")
    return removed
