"""Backends that run a workload, as plugins: one declaration each, listed here.

``REGISTRY`` maps each backend's name to where its :class:`~runtimes.declaration.Declaration`
lives (``"module:attribute"``, a module that imports only the standard library).
Reading a declaration imports none of the backend's code: ``get(name)`` does,
so a host without, say, libvirt can still run the others.  The order here is
the display order of reports and charts.

Adding a backend is one module (its ``Backend`` class and its declaration) plus
one line below, or ``register(declaration)`` at run time (tests do).
"""

from __future__ import annotations

from collections.abc import Callable

from runtimes.base import Backend
from runtimes.declaration import Declaration, resolve_named

#: backend name -> "module:attribute" of its declaration
REGISTRY: dict[str, str] = {
    "bare": "runtimes.bare:DECLARATION",
    "unshare": "runtimes.unshare:DECLARATION",
    "bwrap": "runtimes.bwrap:DECLARATION",
    "container": "runtimes.container:DECLARATION",
    "container:cold": "runtimes.container:COLD",
    "container:fork": "runtimes.container:FORK",
    "container:python": "runtimes.container:PYTHON",
    "container:unconfined": "runtimes.container:UNCONFINED",
    "oci:runc": "runtimes.oci:RUNC",
    "oci:crun": "runtimes.oci:CRUN",
    "oci:runsc": "runtimes.oci:RUNSC",
    "podman": "runtimes.podman:DECLARATION",
    "vm": "runtimes.vm:DECLARATION",
    "qemu": "runtimes.vm:QEMU",
    "qemu:virtiofs": "runtimes.vm:QEMU_VIRTIOFS",
}

#: what ``isobench exec`` runs a command in unless told otherwise
DEFAULT_EXEC = "container"

_loaded: dict[str, Declaration] = {}


def register(declaration: Declaration) -> Callable[[], None]:
    """Add a backend at run time (after the built-in ones); returns a function that removes it."""
    name = declaration.name
    if name in REGISTRY:
        raise ValueError(f"backend {name!r} is already registered")
    REGISTRY[name] = f"<registered>:{name}"
    _loaded[name] = declaration

    def unregister() -> None:
        REGISTRY.pop(name, None)
        _loaded.pop(name, None)

    return unregister


def names() -> list[str]:
    return list(REGISTRY)


def declaration(name: str) -> Declaration:
    """The declaration of backend ``name`` (imports only its declaration module)."""
    if name not in REGISTRY:
        raise KeyError(f"unknown backend {name!r} (known: {', '.join(REGISTRY)})")
    if name not in _loaded:
        _loaded[name] = resolve_named(REGISTRY[name], Declaration, name, "declaration of backend")
    return _loaded[name]


def declarations() -> list[Declaration]:
    """Every registered backend's declaration, in display order."""
    return [declaration(n) for n in REGISTRY]


def known(name: str) -> bool:
    return name in REGISTRY


def get(name: str, **options: object) -> Backend:
    """An instance of backend ``name`` (imports its code: may raise ImportError)."""
    return declaration(name).create(**options)


def peer_reference(name: str) -> str | None:
    """The backend ``name`` is a reference peer of (None if it is no peer)."""
    return declaration(name).peer_of if known(name) else None


def reference() -> str:
    """The reference backend (``Declaration.reference``): what every other is measured against."""
    return _the(lambda d: d.reference, "reference")


def floor_target() -> str:
    """The backend the floor's rows (``floor.json``) are attached to."""
    return _the(lambda d: d.floor_target, "floor_target")


def _the(pred: Callable[[Declaration], bool], what: str) -> str:
    found = [d.name for d in declarations() if pred(d)]
    if len(found) != 1:
        raise LookupError(f"exactly one backend must declare {what} (found: {found or 'none'})")
    return found[0]


def is_guest(name: str) -> bool:
    return known(name) and declaration(name).guest


__all__ = ["REGISTRY", "Declaration", "declaration", "declarations", "floor_target", "get", "is_guest",
           "known", "names", "peer_reference", "reference", "register"]
