"""The floor: a lower bound of a container's launch→ready, from the microbenchmarks' JSON.

``nox -s microbench`` times each kernel primitive a container launch is made
of (``benchmarks/test_primitives.py``) and pytest-benchmark saves the results
under ``.benchmarks/``.  ``floor_ms(path)`` turns one such file into a **lower
bound** with a critical-path model (``ROLES``):

- every primitive counts by its *fastest* round, not its median (a bound must
  hold for the fast launches too);
- steps on the launch's critical path add up (fork+exec of the workload up to
  its ready marker, the namespaces that must be new per launch, lo up, the
  warm cgroup join the launcher does from inside the child);
- steps that overlap the path (the parent creating the cgroup while the child
  starts) count once, by their maximum against the path;
- steps a launcher can avoid count 0 and are listed as such: the mount plan and
  pivot_root (a prepared root is reused), a cold cgroup migration (joined from
  inside, no RCU grace period), copying the harness's mount table (the copy
  made per launch is of a smaller, prepared table).

A floor that a measured median beats is no floor: the report then says the
floor is invalid instead of printing a ratio below 1.  Primitives timed in a
forked child include a pipe round trip; its fastest round is subtracted
(never below zero).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import runtimes
from harness.metric import LOWER, Metric, declare
from harness.sample import Sample
from runtimes.userpaths import read_regular

#: floor rows are rows of the startup measurement (the report compares them with its launch → ready)
FLOOR = Metric("floor_", "ms", LOWER, "startup", peer=True, prefix=True,
               description="the floor: fastest round of a kernel primitive of a launch "
                           "(floor_total: the critical-path lower bound)")
declare(FLOOR)

PATH, PARALLEL, AVOIDABLE, TEARDOWN = "path", "parallel", "avoidable", "teardown"
#: how each primitive counts in the lower bound (see the module doc); unknown in-floor ones: PATH
ROLES = {
    "fork_exec_ready": PATH, "unshare_pid": PATH, "unshare_uts": PATH, "unshare_ipc": PATH,
    "unshare_net": PATH, "unshare_cgroup": PATH, "loopback_up": PATH, "cgroup_place_back_to_back": PATH,
    "cgroup_create": PARALLEL,
    "unshare_mnt": AVOIDABLE, "mount_plan": AVOIDABLE, "pivot_root": AVOIDABLE, "cgroup_place": AVOIDABLE,
    "cgroup_remove": TEARDOWN,
}

BENCH_DIR = Path(".benchmarks")
TOTAL = "total"
TOTAL_WITH_TEARDOWN = "total_with_teardown"


class FloorError(ValueError):
    """The JSON is not a floor microbenchmark result; the message says why."""


def latest(bench_dir: str | os.PathLike[str] = BENCH_DIR) -> Path:
    """The newest pytest-benchmark JSON below ``bench_dir`` (autosave nests it per machine)."""
    found = sorted(Path(bench_dir).rglob("*.json"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise FloorError(f"no pytest-benchmark JSON below {bench_dir} (run `nox -s microbench` first)")
    return found[-1]


def _load(path: str | os.PathLike[str]) -> dict[str, Any]:
    p = Path(path)
    if p.is_dir():
        p = latest(p)
    try:
        data = json.loads(read_regular(p))
    except (OSError, json.JSONDecodeError) as e:
        raise FloorError(f"{p}: cannot read benchmark JSON: {e}") from e
    if not isinstance(data, Mapping) or not isinstance(data.get("benchmarks"), list):
        raise FloorError(f"{p}: not a pytest-benchmark result (no 'benchmarks' list)")
    return dict(data)


def primitives(data: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """primitive -> {median_ms, method, in_floor, teardown} from a loaded JSON."""
    out: dict[str, dict[str, Any]] = {}
    for i, b in enumerate(data["benchmarks"]):
        info = (b.get("extra_info") or {}) if isinstance(b, Mapping) else None
        if not isinstance(info, Mapping):
            raise FloorError(f"benchmarks[{i}]: not a pytest-benchmark entry")
        name = info.get("primitive")
        if not name:
            continue
        try:
            st = b["stats"]
            entry = {"median_ms": float(st["median"]) * 1e3, "min_ms": float(st.get("min", st["median"])) * 1e3,
                     "method": info.get("method"), "in_floor": bool(info.get("floor")),
                     "teardown": bool(info.get("teardown"))}
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise FloorError(f"benchmarks[{i}] ({name}): no usable stats ({type(e).__name__}: {e})") from None
        # the same primitive may be measured on two hierarchies: the one in the floor wins
        if name not in out or (entry["in_floor"] and not out[name]["in_floor"]):
            out[name] = entry
    return out


def role(name: str, prim: Mapping[str, Any]) -> str:
    if prim["teardown"]:
        return TEARDOWN
    return ROLES.get(name, PATH)


def floor_ms(bench_json_path: str | os.PathLike[str]) -> dict[str, float]:
    """The lower bound per primitive (fastest round, ms) and ``total``: the critical path of
    launch→ready (``ROLES``); ``total_with_teardown`` adds the teardown steps.

    Primitives the model counts 0 (avoidable) are returned with their value all the same.
    ``bench_json_path`` is a pytest-benchmark JSON file, or a directory (the newest JSON in it).
    """
    prims = primitives(_load(bench_json_path))
    roundtrip = prims.get("roundtrip", {}).get("min_ms", 0.0)
    out: dict[str, float] = {}
    for name, p in prims.items():
        if not (p["in_floor"] or ROLES.get(name) in (PATH, PARALLEL)) or name == "roundtrip":
            continue
        out[name] = max(0.0, p["min_ms"] - (roundtrip if p["method"] == "worker" else 0.0))
    if not any(prims[k]["in_floor"] for k in out):
        raise FloorError("no floor benchmarks in this JSON (extra_info 'floor' is set by benchmarks/)")
    by = {r: [v for k, v in out.items() if role(k, prims[k]) == r] for r in (PATH, PARALLEL, TEARDOWN)}
    path = sum(by[PATH])
    out[TOTAL] = max([path, *by[PARALLEL]])  # overlapping steps count once, by the longest
    out[TOTAL_WITH_TEARDOWN] = out[TOTAL] + sum(by[TEARDOWN])
    return out


def informational_ms(bench_json_path: str | os.PathLike[str]) -> dict[str, float]:
    """Medians (ms) of the benchmarks outside the floor: roundtrip, back-to-back attach, XML rendering..."""
    prims = primitives(_load(bench_json_path))
    return {k: p["median_ms"] for k, p in prims.items() if not p["in_floor"]}


def samples(bench_json_path: str | os.PathLike[str], backend: str | None = None,
            per_primitive: bool = False) -> list[Sample]:
    """The floor as result rows: ``floor_total`` (startup/noop, ms), and with ``per_primitive``
    one ``floor_<primitive>`` row each.

    For the report's "Startup vs. the floor" section, which compares every
    ``floor_*`` row with the launch→ready of the backend they belong to (by default
    the one declared ``floor_target``): append these to a run made on the same host
    (``RunWriter.add_all``).  Only the total is a like for like comparison with
    launch→ready, hence the default.
    """
    backend = backend or runtimes.floor_target()
    return [Sample(backend=backend, workload="noop", measurement=FLOOR.family, metric=f"floor_{k}", value=v,
                   unit="ms", note="critical-path lower bound (harness.floor)" if k == TOTAL else None,
                   case="startup/noop")
            for k, v in floor_ms(bench_json_path).items()
            if k == TOTAL or (per_primitive and k != TOTAL_WITH_TEARDOWN)]


def lines(bench: str | os.PathLike[str] = BENCH_DIR) -> list[tuple[str, float, str]]:
    """(primitive, ms, its role) per floor term of ``bench`` (a JSON, or a directory: its latest),
    the largest first and the totals last: what ``isobench floor`` prints."""
    floor = floor_ms(bench)
    prims = primitives(_load(bench))
    return [(k, v, "" if k.startswith("total") else role(k, prims[k]))
            for k, v in sorted(floor.items(), key=lambda kv: (kv[0].startswith("total"), -kv[1]))]
