"""The order samples are taken in, and the host's state when each one starts.

Within a case the run is a sequence of **blocks**; each backend appears at most
once per block, in a seeded random order (a fresh permutation per block), so
no backend always follows the same one: a v1 cgroup attach costs ~0.03 ms
right after another attach and ~8 ms after a pause, so a fixed order would
hand one backend the cheap slot every time.  A backend with fewer repetitions
than the longest one has them **spread evenly** across the blocks (3 TCG VM
boots land at the start, middle and end of 30 container launches, not all
during the others' warm-ups), and its warm-ups run **right before its first
measured sample**, in the same block.  The seed is the scenario's (``seed``,
default 0) mixed with the case id, so a scenario reruns in the same order.

Every sample then records where it ran (``position`` in the run, the
``predecessor`` step's backend/case) and the host's conditions at its launch
(1-minute load, CPU steal since the previous step, CPU pressure, the harness's
own RSS), so a report can plot a value against its position and find drift.
"""

from __future__ import annotations

import contextlib
import os
import random
from dataclasses import dataclass
from pathlib import Path

from harness.case import Case

#: stdlib random, not numpy: numpy would swell the harness every launch forks (fork cost ~ RSS)
_PAGE_MIB = os.sysconf("SC_PAGE_SIZE") / (1 << 20)


@dataclass(frozen=True)
class Step:
    case: Case  # already resolved for the backend (overrides applied)
    backend: str
    repetition: int
    warmup: bool
    block: int = 0


def spread(count: int, blocks: int) -> list[int]:
    """``count`` distinct block indices out of ``blocks``, evenly spaced, centred in their share."""
    if count >= blocks:
        return list(range(blocks))
    return [int((i + 0.5) * blocks / count) for i in range(count)]


def plan(cases: list[Case], backends: list[str], accel: dict[str, str], seed: int = 0) -> list[Step]:
    """Every (case, repetition, backend): shuffled blocks, spread repetitions, warm-ups just in time."""
    steps: list[Step] = []
    for case in cases:
        per_backend = {b: case.for_backend(b, accel.get(b)) for b in backends
                       if not case.skipped_on(b, accel.get(b))}
        blocks = max((c.repetitions for c in per_backend.values()), default=0)
        slots = {b: set(spread(c.repetitions, blocks)) for b, c in per_backend.items()}
        rng = random.Random(f"{seed}/{case.id}")  # a str seed is hashed stably (sha512), unlike hash()
        done = dict.fromkeys(per_backend, 0)
        for block in range(blocks):
            here = [b for b in per_backend if block in slots[b]]
            rng.shuffle(here)
            for b in here:
                c = per_backend[b]
                if done[b] == 0:
                    steps += [Step(c, b, w, True, block) for w in range(c.warmups)]
                steps.append(Step(c, b, done[b], False, block))
                done[b] += 1
    return steps


def label(step: Step | None) -> str | None:
    return None if step is None else f"{step.backend} {step.case.id}" + (" (warm-up)" if step.warmup else "")


class Conditions:
    """Reads the host's state before each step; cheap (a few /proc reads, ~0.1 ms), and taken
    outside every timed window."""

    def __init__(self) -> None:
        self._last_steal = self._steal()

    @staticmethod
    def _steal() -> tuple[int, int] | None:
        """(steal, total) jiffies over all CPUs from /proc/stat."""
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
            return fields[7], sum(fields)
        return None

    @staticmethod
    def _psi_cpu() -> float | None:
        with contextlib.suppress(OSError, ValueError, IndexError):
            some = Path("/proc/pressure/cpu").read_text().split("\n", 1)[0]
            return float(some.split()[1].split("=")[1])  # avg10, percent of time stalled
        return None

    def read(self) -> dict[str, float]:
        out: dict[str, float] = {"load1": os.getloadavg()[0]}
        with contextlib.suppress(OSError, ValueError, IndexError):
            out["harness_rss_mib"] = int(Path("/proc/self/statm").read_text().split()[1]) * _PAGE_MIB
        steal = self._steal()
        if steal and self._last_steal and steal[1] > self._last_steal[1]:
            out["steal_pct"] = 100 * (steal[0] - self._last_steal[0]) / (steal[1] - self._last_steal[1])
        self._last_steal = steal
        psi = self._psi_cpu()
        if psi is not None:
            out["psi_cpu_some_avg10"] = psi
        return out
