"""The rest of the OCI process defaults, applied by the container's init before exec.

- **rlimits**: ``runc spec``'s ``process.rlimits`` (RLIMIT_NOFILE 1024/1024);
  everything else is inherited, as with runc.  Set before the capabilities are
  cut (raising a hard limit needs CAP_SYS_RESOURCE).
- **oom_score_adj**: the spec's ``process.oomScoreAdj`` (0), so the workload
  does not inherit whatever the harness runs with (e.g. a protected -1000).
- **session keyring**: a fresh anonymous session keyring
  (KEYCTL_JOIN_SESSION_KEYRING, as runc does), so the workload does not share
  the harness's; the seccomp profile then blocks keyctl altogether.  Root's user
  keyring is per uid and stays shared without a user namespace (as with runc).

Every function here runs in the forked child (any launcher's) and uses only
stdlib + ctypes: nothing to import after the fork.
"""

from __future__ import annotations

import ctypes
import os
import platform
import resource
from collections.abc import Iterable
from typing import Any

#: (resource, soft, hard): runc spec's default process.rlimits
RLIMITS: tuple[tuple[str, int, int], ...] = (("RLIMIT_NOFILE", 1024, 1024),)
OOM_SCORE_ADJ = 0

KEYCTL_GET_KEYRING_ID = 0
KEYCTL_JOIN_SESSION_KEYRING = 1
KEY_SPEC_SESSION_KEYRING = -3
_SYS_KEYCTL = {"x86_64": 250, "aarch64": 219, "riscv64": 219, "ppc64le": 280, "s390x": 280}

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def rlimit_numbers(rlimits: Iterable[tuple[str, int, int]] = RLIMITS) -> tuple[tuple[int, int, int], ...]:
    """Names -> ``resource`` numbers, resolved in the harness (an unknown name fails there)."""
    out = []
    for name, soft, hard in rlimits:
        num = getattr(resource, name, None)
        if num is None:
            raise ValueError(f"unknown rlimit {name}")
        out.append((int(num), soft, hard))
    return tuple(out)


def oci_rlimits(rlimits: Iterable[tuple[str, int, int]] = RLIMITS) -> list[dict[str, Any]]:
    return [{"type": name, "soft": soft, "hard": hard} for name, soft, hard in rlimits]


def set_rlimits(rlimits: Iterable[tuple[int, int, int]]) -> None:
    for num, soft, hard in rlimits:
        try:
            resource.setrlimit(num, (soft, hard))
        except (OSError, ValueError) as e:
            raise OSError(getattr(e, "errno", 0) or 0, f"setrlimit({num}, {soft}, {hard}): {e}") from e


def set_oom_score_adj(value: int) -> None:
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(value))
    except OSError as e:
        raise OSError(e.errno, f"writing oom_score_adj {value}: {e.strerror}") from e


def keyctl(op: int, arg2: int = 0) -> int:
    nr = _SYS_KEYCTL.get(platform.machine())
    if nr is None:
        raise OSError(0, f"keyctl: syscall number unknown on {platform.machine()}")
    r = int(_libc.syscall(ctypes.c_long(nr), ctypes.c_int(op), ctypes.c_long(arg2), ctypes.c_long(0),
                          ctypes.c_long(0), ctypes.c_long(0)))
    if r < 0:
        e = ctypes.get_errno()
        raise OSError(e, f"keyctl({op}): {os.strerror(e)}")
    return r


def join_session_keyring() -> int:
    """A new anonymous session keyring for this process; returns its serial."""
    return keyctl(KEYCTL_JOIN_SESSION_KEYRING, 0)


def session_keyring() -> int:
    """The serial of this process's session keyring (tests compare host and container)."""
    return keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING)
