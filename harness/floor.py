"""The floor: what a container launch cannot go below, from the microbenchmarks' JSON.

``nox -s microbench`` times each kernel primitive a container launch is made
of (``benchmarks/test_primitives.py``) and pytest-benchmark saves the results
under ``.benchmarks/``.  ``floor_ms(path)`` reads one such file and returns the
median of each primitive in milliseconds and their sum, ``total``: the
launch→ready of a container that did nothing but those primitives, one after
the other (fork+exec of the workload up to its ready marker, one unshare per
namespace kind, cgroup create and place, the mount plan, pivot_root, bringing
lo up).  ``cgroup_remove`` is returned too but belongs to teardown, so it is in
``total_with_teardown``, not in ``total``.

Primitives timed in a forked child include a pipe round trip, which the
``roundtrip`` benchmark measures alone; it is subtracted (never below zero).
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

declare(Metric("floor_", "ms", LOWER, "startup", peer=True, prefix=True,
               description="the floor: median of a kernel primitive of a launch (floor_total: their sum)"))

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
        data = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise FloorError(f"{p}: cannot read benchmark JSON: {e}") from e
    if not isinstance(data, Mapping) or not isinstance(data.get("benchmarks"), list):
        raise FloorError(f"{p}: not a pytest-benchmark result (no 'benchmarks' list)")
    return dict(data)


def primitives(data: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """primitive -> {median_ms, method, in_floor, teardown} from a loaded JSON."""
    out: dict[str, dict[str, Any]] = {}
    for b in data["benchmarks"]:
        info = b.get("extra_info") or {}
        name = info.get("primitive")
        if not name:
            continue
        entry = {"median_ms": float(b["stats"]["median"]) * 1e3, "method": info.get("method"),
                 "in_floor": bool(info.get("floor")), "teardown": bool(info.get("teardown"))}
        # the same primitive may be measured on two hierarchies: the one in the floor wins
        if name not in out or (entry["in_floor"] and not out[name]["in_floor"]):
            out[name] = entry
    return out


def floor_ms(bench_json_path: str | os.PathLike[str]) -> dict[str, float]:
    """Median ms per primitive of the floor, plus ``total`` (launch→ready) and ``total_with_teardown``.

    ``bench_json_path`` is a pytest-benchmark JSON file, or a directory (the newest JSON in it).
    """
    prims = primitives(_load(bench_json_path))
    roundtrip = prims.get("roundtrip", {}).get("median_ms", 0.0)
    out: dict[str, float] = {}
    for name, p in prims.items():
        if not p["in_floor"]:
            continue
        value = p["median_ms"] - (roundtrip if p["method"] == "worker" else 0.0)
        out[name] = max(0.0, value)
    if not out:
        raise FloorError("no floor benchmarks in this JSON (extra_info 'floor' is set by benchmarks/)")
    everything = sum(out.values())
    out[TOTAL] = sum(v for k, v in out.items() if not prims[k]["teardown"])
    out[TOTAL_WITH_TEARDOWN] = everything
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
    return [Sample(backend=backend, workload="noop", measurement="startup", metric=f"floor_{k}", value=v,
                   unit="ms", note="sum of microbenchmark medians (harness.floor)" if k == TOTAL else None,
                   case="startup/noop")
            for k, v in floor_ms(bench_json_path).items()
            if k == TOTAL or (per_primitive and k != TOTAL_WITH_TEARDOWN)]


def main(argv: list[str] | None = None) -> int:
    """``python -m harness.floor [JSON or dir]``: print the floor, one primitive a line."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    try:
        floor = floor_ms(args[0] if args else BENCH_DIR)
    except FloorError as e:
        print(f"isobench floor: {e}", file=sys.stderr)
        return 2
    for k, v in sorted(floor.items(), key=lambda kv: (kv[0].startswith("total"), -kv[1])):
        print(f"{k:<24} {v:9.3f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
