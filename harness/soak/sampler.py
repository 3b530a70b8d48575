"""What a long run holds, read between launches: the runner's observer (``harness.runner.Observer``).

Every ``every`` steps (and before the first, and after the last) one ``Reading`` goes to
``<run dir>/resources.jsonl``: the harness's RSS, open fds and threads; the same of every
long-lived helper a backend names (``Backend.helpers()``: the container's zygote, under its
role, whatever its pid after a restart); the proc-connector sockets the harness holds; and,
host-wide, the cgroups the kernel holds, the mounts of the harness's mount namespace and the
proc-connector sockets of every process -- beside the cgroups and mounts that carry this run's
name (``isobench-<run id>-``), which between two launches must be none.

The readings are taken between launches (the observer is called after a step, its instance
cleaned up), never inside a timed window; one costs about a millisecond.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from harness.soak import procfs
from runtimes.naming import PREFIX

if TYPE_CHECKING:  # pragma: no cover
    from harness.schedule import Step
    from runtimes.base import Backend

READINGS = "resources.jsonl"
#: the host-wide quantities: other processes move them too (a shared machine), so they are shown,
#: not judged (``analysis``)
HOST = "host"
HARNESS = "harness"
RUN = "run"


@dataclass(frozen=True)
class Reading:
    """One reading: after ``steps`` steps (``launches`` per backend), ``t_s`` into the run."""

    steps: int
    t_s: float
    launches: Mapping[str, int]
    #: "<owner>/<quantity>" -> value (None: could not be read); owner is ``harness``, ``host``,
    #: ``run`` or ``<backend>/<helper>``
    values: Mapping[str, float | None] = field(default_factory=dict)


def _process(owner: str, pid: int) -> dict[str, float | None]:
    return {f"{owner}/rss_kib": procfs.rss_kib(pid), f"{owner}/fds": procfs.fds(pid),
            f"{owner}/threads": procfs.threads(pid)}


def _named(run_id: str, lines: list[str]) -> int:
    return sum(1 for line in lines if f"{PREFIX}-{run_id}-" in line or line.endswith(f"{PREFIX}-{run_id}"))


def _run_cgroups(run_id: str) -> int:
    """Cgroups below ours that carry the run's name (every hierarchy)."""
    from runtimes import cgroups

    try:
        return sum(1 for d in cgroups.find_leftovers() if any(f"{PREFIX}-{run_id}-" in p for p in d.parts))
    except (OSError, cgroups.CgroupError):
        return -1


def read(steps: int, launches: Mapping[str, int], t_s: float, backends: Mapping[str, Backend],
         run_id: str) -> Reading:
    pid = os.getpid()
    values: dict[str, float | None] = _process(HARNESS, pid)
    values[f"{HARNESS}/connector_listeners"] = procfs.connector_listeners(pid)
    for name, backend in backends.items():
        for helper, hpid in backend.helpers().items():
            values.update(_process(f"{name}/{helper}", hpid))
    try:
        mountinfo = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        mountinfo = []
    values.update({f"{HOST}/cgroups": procfs.cgroups(), f"{HOST}/mounts": float(len(mountinfo)) or None,
                   f"{HOST}/connector_listeners": procfs.connector_listeners(),
                   f"{RUN}/cgroups": _run_cgroups(run_id), f"{RUN}/mounts": _named(run_id, mountinfo)})
    return Reading(steps, round(t_s, 3), dict(launches), values)


class Sampler:
    """The observer: a reading every ``every`` steps, appended to the run's ``resources.jsonl``."""

    def __init__(self, every: int = 10):
        if every < 1:
            raise ValueError("every: at least 1")
        self.every = every
        self.launches: dict[str, int] = {}
        self.taken = 0  # the readings are in the file only: kept here, they would grow the harness
        self._t0 = time.monotonic()
        self._out: Path | None = None
        self._last = -1

    def __call__(self, done: int, step: Step | None, backends: Mapping[str, Backend], run_dir: Path) -> None:
        if step is not None:
            self.launches[step.backend] = self.launches.get(step.backend, 0) + 1
        elif done == 0:  # the start
            self._t0, self._out = time.monotonic(), run_dir / READINGS
            self.launches = dict.fromkeys(backends, 0)
        if done % self.every == 0 or step is None:  # and the end, whatever ``every``
            self.take(done, backends, run_dir.name)

    def take(self, done: int, backends: Mapping[str, Backend], run_id: str) -> Reading | None:
        """A reading now (once per step count: the last one may be taken twice, by the runner and
        by ``finish``)."""
        if done == self._last:
            return None
        self._last = done
        r = read(done, self.launches, time.monotonic() - self._t0, backends, run_id)
        self.taken += 1
        if self._out is not None:
            with open(self._out, "a") as f:
                f.write(json.dumps(asdict(r)) + "\n")
        return r


def load(run_dir: Path) -> list[Reading]:
    """The readings of a run (``resources.jsonl``); a line cut off by a kill is dropped."""
    out = []
    with open(run_dir / READINGS) as f:
        for line in f:
            try:
                d = json.loads(line)
                out.append(Reading(int(d["steps"]), float(d["t_s"]), dict(d["launches"]), dict(d["values"])))
            except (ValueError, KeyError, TypeError):
                continue
    return out


def left(run_id: str) -> list[str]:
    """What of run ``run_id`` is still on the host once it ended: cgroups, mounts, processes
    (container inits, runtimes, QEMU) whose name or command line carries the run's name."""
    from runtimes import cgroups

    tag = f"{PREFIX}-{run_id}-"
    found = []
    with contextlib.suppress(OSError, cgroups.CgroupError):
        found += [f"cgroup {d}" for d in cgroups.find_leftovers() if any(tag in p for p in d.parts)]
    with contextlib.suppress(OSError):
        found += [f"mount {line.split()[4]}" for line in Path("/proc/self/mountinfo").read_text().splitlines()
                  if tag in line]
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if tag in cmdline and int(pid) != os.getpid():
                found.append(f"process {pid}: {cmdline[:120]}")
    return found
