"""Opening libvirt with a running event loop (lifecycle events need one), and again after a restart.

libvirt delivers domain events only to connections opened *after* an event
loop implementation was registered, and only while something runs that loop:
one daemon thread per process does, started before the first connection.
A restarted libvirtd closes every connection; ``Connection`` opens its own again.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable

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


def alive(conn: libvirt.virConnect | None) -> bool:
    """Whether ``conn`` still reaches libvirtd (a restarted daemon closed it)."""
    if conn is None:
        return False
    try:
        return bool(conn.isAlive())
    except libvirt.libvirtError:
        return False


class Connection:
    """The backend's one connection, with its lifecycle callback; opened again (and the callback
    registered again) when libvirtd went away -- a restart closes every client's connection,
    while the guests it runs keep running and the new daemon takes them over."""

    def __init__(self, uri: str, on_lifecycle: Callable[..., None]):
        self.uri = uri
        self._on_lifecycle = on_lifecycle
        self._lock = threading.Lock()
        self._conn: libvirt.virConnect | None = None
        self._callback: int | None = None
        #: how many times it was opened (more than once: libvirtd was restarted meanwhile)
        self.opened = 0

    def get(self) -> libvirt.virConnect:
        with self._lock:
            if self._conn is not None and not alive(self._conn):
                self._drop()
            if self._conn is None:
                conn = open_connection(self.uri)
                self._callback = conn.domainEventRegisterAny(
                    None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._on_lifecycle, None)
                self._conn = conn
                self.opened += 1
            return self._conn

    def lookup(self, name: str) -> libvirt.virDomain | None:
        """Domain ``name`` on a live connection; None when libvirt no longer knows it."""
        try:
            return self.get().lookupByName(name)
        except libvirt.libvirtError as e:
            if e.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return None
            raise

    def _drop(self) -> None:
        conn, self._conn, callback, self._callback = self._conn, None, self._callback, None
        if conn is not None:
            with contextlib.suppress(libvirt.libvirtError):
                if callback is not None and alive(conn):
                    conn.domainEventDeregisterAny(callback)
                conn.close()

    def close(self) -> None:
        with self._lock:
            self._drop()
