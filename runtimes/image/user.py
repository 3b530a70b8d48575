"""An image's ``User`` as numbers: uid, gid and supplementary groups, read from the image itself.

The forms are Docker's: ``""`` (root), ``uid``, ``uid:gid``, ``name``, ``name:group``,
``uid:group``, ``name:gid``.  Names are looked up in the image's own ``/etc/passwd`` and
``/etc/group`` (through its layers, ``runtimes.image.layers``), never the host's.  A numeric
uid missing from the image's passwd runs with gid 0, as Docker does; a name that is missing is
an error.  Supplementary groups are the groups of the image's ``/etc/group`` that list the
user by name (Docker adds them too).  Resolved once, when the workload is defined, so every
backend runs the same numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from runtimes.image import layers as image_layers

#: Linux's largest valid id (-1 is "no change")
MAX_ID = 2**32 - 2


@dataclass(frozen=True)
class Ids:
    uid: int = 0
    gid: int = 0
    groups: tuple[int, ...] = ()
    #: the user's home directory from the image's passwd (HOME when the image's Env has none)
    home: str | None = None


def _table(text: str | None, width: int) -> list[list[str]]:
    rows = []
    for line in (text or "").splitlines():
        if line.strip() and not line.startswith("#"):
            fields = line.split(":")
            if len(fields) >= width:
                rows.append(fields)
    return rows


def _number(text: str, what: str) -> int | None:
    if not text.isdigit():
        return None
    value = int(text)
    if value > MAX_ID:
        raise ValueError(f"{what} {value} is out of range (at most {MAX_ID})")
    return value


def resolve(layers: Sequence[Path], user: str) -> Ids:
    """``user`` (as an image config or scenario writes it) as ``Ids``; ValueError naming the problem."""
    if user in ("", None):
        user = "0"
    name, _, group = user.partition(":")
    if not name:
        raise ValueError(f"user {user!r} names no user")
    passwd = _table(image_layers.read_text(layers, "etc/passwd"), 7)
    groups = _table(image_layers.read_text(layers, "etc/group"), 4)
    uid = _number(name, "uid")
    entry = next((r for r in passwd if (r[0] == name if uid is None else r[2] == str(uid))), None)
    if uid is None:
        if entry is None:
            raise ValueError(f"user {name!r} is not in the image's /etc/passwd")
        uid = _number(entry[2], "uid")
        if uid is None:
            raise ValueError(f"the image's /etc/passwd has a bad uid for {name!r}: {entry[2]!r}")
    gid = _number(entry[3], "gid") if entry is not None else 0
    if group:
        gid = _number(group, "gid")
        if gid is None:
            grp = next((r for r in groups if r[0] == group), None)
            if grp is None:
                raise ValueError(f"group {group!r} is not in the image's /etc/group")
            gid = _number(grp[2], "gid")
            if gid is None:
                raise ValueError(f"the image's /etc/group has a bad gid for {group!r}: {grp[2]!r}")
    username = entry[0] if entry is not None else None
    extra: list[int] = []
    if username is not None:
        for r in groups:
            g = _number(r[2], "gid") if r[2].isdigit() else None
            if g is not None and g != gid and username in r[3].split(","):
                extra.append(g)
    home = entry[5] if entry is not None and entry[5] else None
    return Ids(uid, gid or 0, tuple(dict.fromkeys(extra)), home)
