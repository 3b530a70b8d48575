"""The shape of a seccomp profile (the container engines' format, which includes OCI's), checked
before anything of it is used.

A profile is security policy: a malformed one must not lose rules quietly.  A string where a
list belongs (``"names": "mkdir"``) would otherwise be read letter by letter, a missing key
end in a traceback, an unknown action or comparison in a half-built filter.  ``validate``
raises ``ProfileError`` with one line that names the rule (its index, and its syscalls when
they can be read) and what is wrong with it.  Keys it does not know are left alone, as the
engines (Go's encoding/json) leave them.

The schema is moby's ``types.Seccomp`` (``defaultAction``, ``defaultErrnoRet``,
``architectures``, ``archMap``, ``syscalls`` with ``names``/``name``, ``action``,
``errnoRet``, ``args``, ``includes``/``excludes``) and the OCI runtime spec's
``linux.seccomp``, its subset.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: libseccomp's actions, as profiles spell them (runc's and crun's list)
ACTIONS = frozenset({"SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_TRAP",
                     "SCMP_ACT_ERRNO", "SCMP_ACT_TRACE", "SCMP_ACT_ALLOW", "SCMP_ACT_LOG", "SCMP_ACT_NOTIFY"})
#: argument comparisons
OPS = ("SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT",
       "SCMP_CMP_MASKED_EQ")
#: a syscall has six arguments
MAX_ARG_INDEX = 5


class ProfileError(ValueError):
    """The profile does not have the schema's shape; the message says where and how."""


def _fail(where: str, what: str, value: object) -> ProfileError:
    if isinstance(value, str):
        shown = f"the string {value!r}"
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        shown = repr(value)
    else:
        shown = {bool: "true/false", list: "a list", dict: "an object", type(None): "null"}.get(
            type(value), type(value).__name__)
    return ProfileError(f"{where}: {what}, got {shown}")


def _string(where: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise _fail(where, "must be a non-empty string", value)
    return value


def _strings(where: str, value: object) -> list[str]:
    if not isinstance(value, list):
        raise _fail(where, "must be a list of strings", value)
    return [_string(f"{where}[{i}]", v) for i, v in enumerate(value)]


def _number(where: str, value: object, low: int = 0, high: int | None = None) -> int:
    # bool is an int in Python, not in JSON's sense
    if not isinstance(value, int) or isinstance(value, bool) or value < low or (high is not None and value > high):
        span = f"{low}..{high}" if high is not None else f">= {low}"
        raise _fail(where, f"must be a whole number {span}", value)
    return value


def _object(where: str, value: object) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise _fail(where, "must be an object", value)
    return value


def _action(where: str, value: object) -> None:
    if _string(where, value) not in ACTIONS:
        raise ProfileError(f"{where}: unknown action {value!r} (known: {', '.join(sorted(ACTIONS))})")


def _filter(where: str, value: object) -> None:
    """``includes``/``excludes``: caps, arches, minKernel."""
    obj = _object(where, value)
    for key in ("caps", "arches"):
        if key in obj:
            _strings(f"{where}.{key}", obj[key])
    if "minKernel" in obj:
        _string(f"{where}.minKernel", obj["minKernel"])


def _arg(where: str, value: object) -> None:
    arg = _object(where, value)
    for key in ("index", "value", "op"):
        if key not in arg:
            raise ProfileError(f"{where}: no {key!r}")
    _number(f"{where}.index", arg["index"], 0, MAX_ARG_INDEX)
    _number(f"{where}.value", arg["value"], 0, 2**64 - 1)
    if "valueTwo" in arg:
        _number(f"{where}.valueTwo", arg["valueTwo"], 0, 2**64 - 1)
    if _string(f"{where}.op", arg["op"]) not in OPS:
        raise ProfileError(f"{where}.op: unknown comparison {arg['op']!r} (known: {', '.join(OPS)})")


def _rule(where: str, value: object) -> None:
    rule = _object(where, value)
    names = rule.get("names")
    if isinstance(names, list) and all(isinstance(n, str) for n in names) and names:
        where = f"{where} ({', '.join(names[:3])}{', …' if len(names) > 3 else ''})"
    elif isinstance(rule.get("name"), str):
        where = f"{where} ({rule['name']})"
    if "names" in rule:
        if not _strings(f"{where}.names", names):
            raise ProfileError(f"{where}.names: an empty list (a rule for no syscall)")
    elif "name" in rule:
        _string(f"{where}.name", rule["name"])
    else:
        raise ProfileError(f"{where}: no 'names' (the syscalls the rule is for)")
    if "action" not in rule:
        raise ProfileError(f"{where}: no 'action'")
    _action(f"{where}.action", rule["action"])
    if rule.get("errnoRet") is not None:
        _number(f"{where}.errnoRet", rule["errnoRet"])
    if rule.get("args") is not None:
        if not isinstance(rule["args"], list):
            raise _fail(f"{where}.args", "must be a list", rule["args"])
        for i, a in enumerate(rule["args"]):
            _arg(f"{where}.args[{i}]", a)
    for key in ("includes", "excludes"):
        if rule.get(key) is not None:
            _filter(f"{where}.{key}", rule[key])


def validate(profile: object, name: str) -> Mapping[str, Any]:
    """``profile`` if it has the schema's shape, else ``ProfileError("seccomp profile NAME: …")``."""
    try:
        top = _object("the profile", profile)
        if "defaultAction" not in top:
            raise ProfileError("no defaultAction (not a seccomp profile)")
        _action("defaultAction", top["defaultAction"])
        if top.get("defaultErrnoRet") is not None:
            _number("defaultErrnoRet", top["defaultErrnoRet"])
        if top.get("architectures") is not None:
            _strings("architectures", top["architectures"])
        for i, entry in enumerate(_list("archMap", top.get("archMap"))):
            arch = _object(f"archMap[{i}]", entry)
            _string(f"archMap[{i}].architecture", arch.get("architecture"))
            if arch.get("subArchitectures") is not None:
                _strings(f"archMap[{i}].subArchitectures", arch["subArchitectures"])
        for i, rule in enumerate(_list("syscalls", top.get("syscalls"))):
            _rule(f"syscalls[{i}]", rule)
    except ProfileError as e:
        raise ProfileError(f"seccomp profile {name}: {e}") from None
    return top


def _list(where: str, value: object) -> list[Any]:
    """An optional list (null or absent: empty)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise _fail(where, "must be a list", value)
    return value
