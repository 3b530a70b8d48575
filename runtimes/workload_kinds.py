"""The kinds of workload a scenario defines in a ``[workload.NAME]`` table.

The catalog's workloads (``runtimes.workloads.CATALOG``: busybox scripts with a ready marker)
need no table; every other kind is a module with a :class:`Kind` and one line in ``KINDS``
(or ``register(kind)`` at run time).  A table says its kind by the key that names the kind
(``image = "pyhttp"``); the scenario checks the table's keys against the kind's and hands the
table to its ``load``, which returns the workload every backend runs (``runtimes.workloads.
AnyWorkload``: ``runtimes.image.workload.ImageWorkload`` for images).

Reading this module imports no kind: ``KINDS`` names each as ``"module:attribute"``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from runtimes.declaration import resolve_named

if TYPE_CHECKING:  # pragma: no cover
    from runtimes.workloads import AnyWorkload

#: kind (the table key that names it) -> ``"module:attribute"`` of its :class:`Kind`
KINDS: dict[str, str] = {
    "image": "runtimes.image.workload:KIND",
}


class TableError(ValueError):
    """A ``[workload.NAME]`` table is wrong at ``key`` (None: as a whole); str() is the problem."""

    def __init__(self, key: str | None, problem: str):
        super().__init__(problem)
        self.key = key


@dataclass(frozen=True)
class Kind:
    """One kind of workload a table defines."""

    name: str  # the key that names the kind in a table, and the workload's ``kind``
    keys: frozenset[str]  # every key its table may hold (``name`` among them)
    #: ``(workload name, table) -> the workload``; raises TableError (or ValueError) naming the problem
    load: Callable[[str, Mapping[str, Any]], AnyWorkload]


_loaded: dict[str, Kind] = {}


def kind(name: str) -> Kind:
    """The kind ``name`` (imports only its module)."""
    if name not in _loaded:
        _loaded[name] = resolve_named(KINDS[name], Kind, name, "workload kind")
    return _loaded[name]


def of(table: Mapping[str, Any]) -> Kind:
    """The kind a table names (exactly one of ``KINDS`` among its keys), its keys checked;
    TableError otherwise."""
    every = [kind(k) for k in KINDS]
    known = sorted(set().union(*(k.keys for k in every)))
    unknown = sorted(set(table) - set(known))
    if unknown:  # a typo first: "imag" names no kind, but it is the key to fix
        raise TableError(unknown[0], f"unknown key (known: {', '.join(known)})")
    named = [k for k in every if k.name in table]
    if len(named) != 1:
        raise TableError(None, f"must name its kind with exactly one of: {', '.join(KINDS)}"
                               + (f" (it names {', '.join(k.name for k in named)})" if named else ""))
    stray = sorted(set(table) - named[0].keys)
    if stray:
        raise TableError(stray[0], f"not a key of a workload of kind {named[0].name} "
                                   f"(known: {', '.join(sorted(named[0].keys))})")
    return named[0]


def register(new: Kind) -> Callable[[], None]:
    """Add a kind at run time (after the built-in ones); returns a function that removes it."""
    if new.name in KINDS:
        raise ValueError(f"workload kind {new.name!r} is already registered")
    KINDS[new.name] = f"<registered>:{new.name}"
    _loaded[new.name] = new

    def unregister() -> None:
        KINDS.pop(new.name, None)
        _loaded.pop(new.name, None)

    return unregister
