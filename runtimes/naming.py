"""The one name every isobench object on a host carries (cgroups, mounts, domains, processes).

A leaf module (it imports nothing of ours) so that low-level packages such as
``runtimes.cgroups`` can use it without importing the backend contract.
"""

from __future__ import annotations

import os

#: Everything isobench creates on a host carries this in its name.
PREFIX = "isobench"


def pid_alive(pid: int) -> bool:
    """Does process ``pid`` exist?  Leftovers carry their creator's PID in their names: a sweep
    spares those whose creator still runs (another user's process counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
