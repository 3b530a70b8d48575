"""Opening libvirt with a running event loop (lifecycle events need one).

libvirt delivers domain events only to connections opened *after* an event
loop implementation was registered, and only while something runs that loop:
one daemon thread per process does, started before the first connection.
"""

from __future__ import annotations

import threading

import libvirt

from runtimes.base import BackendError
from runtimes.vm.uri import uri as default_uri

_lock = threading.Lock()
_loop: threading.Thread | None = None


def _run_loop() -> None:
    while True:
        libvirt.virEventRunDefaultImpl()


def ensure_event_loop() -> None:
    """Register libvirt's default event loop and run it in a daemon thread (once)."""
    global _loop
    with _lock:
        if _loop is not None:
            return
        libvirt.registerErrorHandler(_quiet, None)
        libvirt.virEventRegisterDefaultImpl()
        _loop = threading.Thread(target=_run_loop, name="isobench-libvirt-events", daemon=True)
        _loop.start()


def _quiet(_ctx: object, _err: object) -> None:
    """libvirt prints every error on stderr by default; ours become exceptions instead."""


def open_connection(uri: str | None = None) -> libvirt.virConnect:
    ensure_event_loop()
    uri = uri or default_uri()
    try:
        return libvirt.open(uri)
    except libvirt.libvirtError as e:
        raise BackendError(f"cannot connect to libvirt at {uri}: {e} "
                           "(fix: isobench doctor --fix, or python -m runtimes.vm.host --setup)") from e


def version_string(v: int) -> str:
    """libvirt's packed versions (major * 1e6 + minor * 1e3 + micro) as "9.0.0"."""
    return f"{v // 1_000_000}.{v // 1000 % 1000}.{v % 1000}"
