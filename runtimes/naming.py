"""The one name every isobench object on a host carries (cgroups, mounts, domains, processes),
and the one check of a run id, which becomes part of paths and cgroup names.

A leaf module (it imports nothing of ours) so that low-level packages such as
``runtimes.cgroups`` can use it without importing the backend contract.
"""

from __future__ import annotations

import re

#: Everything isobench creates on a host carries this in its name.
PREFIX = "isobench"

#: a run id is a name, never a path: it is joined onto the results directory and becomes part
#: of cgroup, bundle and guest names (``isobench-<run id>-<n>``), where "/" or ".." would climb
#: out of the place it is meant for
RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
#: an object name built from one (an instance, a doctor's cgroup): the same alphabet
OBJECT_NAME = re.compile(rf"{PREFIX}-[A-Za-z0-9._-]{{1,200}}")


class BadName(ValueError):
    """A run id or object name that is not a plain name; the message says why."""


def check_run_id(run_id: str) -> str:
    """``run_id`` if it is a plain name (letters, digits, ``.``, ``_``, ``-``; 1-64; not starting
    with a punctuation mark), else ``BadName`` with one line saying what is wrong."""
    if not isinstance(run_id, str) or not RUN_ID.fullmatch(run_id):
        raise BadName(f"run id {run_id!r} is not a name: use 1-64 letters, digits, '.', '_' or '-', "
                         f"starting with a letter or digit")
    return run_id


def check_object_name(name: str) -> str:
    """``name`` if it is ``isobench-`` and a plain name (no "/", no "..", nothing a path or a cgroup
    would read otherwise), else ``BadName``."""
    if not isinstance(name, str) or not OBJECT_NAME.fullmatch(name) or ".." in name:
        raise BadName(f"name {name!r} must contain {PREFIX!r} as its prefix ({PREFIX}-…), then only letters, "
                      f"digits, '.', '_' or '-' (no '/', no '..')")
    return name


def of_run(name: str, run_id: str) -> bool:
    """Whether the object called ``name`` belongs to run ``run_id`` (``isobench-<run id>`` or
    ``isobench-<run id>-…``: a prefix, not a substring, so run "1" is not run "12")."""
    return name == f"{PREFIX}-{run_id}" or name.startswith(f"{PREFIX}-{run_id}-")
