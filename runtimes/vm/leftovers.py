"""Finding and removing guests a dead harness left behind.

Our domains are started with ``VIR_DOMAIN_START_AUTODESTROY``, so libvirtd
destroys them when the harness's connection closes, even after SIGKILL.  This
sweeps what is left anyway (a domain started without it, a daemon restart):
every domain whose name starts with ``isobench-`` or that carries our metadata.
"""

from __future__ import annotations

import contextlib

import libvirt

from runtimes import owners
from runtimes.base import PREFIX
from runtimes.naming import of_run
from runtimes.vm import domain, host
from runtimes.vm.connection import open_connection


def _ours(dom: libvirt.virDomain, run_id: str | None) -> bool:
    name = dom.name()
    try:
        labels = domain.labels(dom.XMLDesc(0))
    except libvirt.libvirtError:  # vanished meanwhile
        labels = None
    if labels is None and not name.startswith(f"{PREFIX}-"):
        return False
    if run_id is None:
        return True
    if labels is not None and "run_id" in labels:
        return labels["run_id"] == run_id
    return of_run(name, run_id)


def find_leftovers(conn: libvirt.virConnect, run_id: str | None = None) -> list[libvirt.virDomain]:
    """Our domains (of ``run_id`` if given) that belong to no run whose harness lives."""
    live = owners.live()
    return [d for d in conn.listAllDomains(0) if _ours(d, run_id) and not _live(d, live)]


def _live(dom: libvirt.virDomain, live: owners.Live) -> bool:
    try:
        labels = domain.labels(dom.XMLDesc(0)) or {}
    except libvirt.libvirtError:
        labels = {}
    run_id = labels.get("run_id")
    return live.owns(dom.name()) or (run_id is not None and run_id in live.runs)


def remove(dom: libvirt.virDomain) -> None:
    """Destroy (if running) and undefine (if persistent); gone already is fine."""
    gone = (libvirt.VIR_ERR_NO_DOMAIN, libvirt.VIR_ERR_OPERATION_INVALID)
    try:
        if dom.isActive():
            dom.destroy()
        if dom.isPersistent():
            dom.undefine()
    except libvirt.libvirtError as e:
        if e.get_error_code() not in gone:
            raise


def cleanup_leftovers(run_id: str | None = None, conn: libvirt.virConnect | None = None) -> list[str]:
    """Destroy every isobench domain (of ``run_id`` if given); returns their names."""
    own = conn is None
    if own and host.uri().startswith("qemu:///system") and not host.daemon_running("libvirtd"):
        return []  # no daemon, no domains (``isobench cleanup`` must not fail for that)
    conn = conn or open_connection()
    try:
        removed = []
        for dom in find_leftovers(conn, run_id):
            name = dom.name()
            remove(dom)
            removed.append(name)
        return removed
    finally:
        if own:
            with contextlib.suppress(libvirt.libvirtError):
                conn.close()
