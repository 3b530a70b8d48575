"""Per cell: did the enforcer hold it?  Said for the backends whose limits something other than
their own cgroup enforces (``Declaration.enforcement``: gVisor's sandbox inside a host cgroup,
a guest's kernel), where "the gate passed" alone would not say *what* held the limit.

A cell is **held** when every check of it passed (skipped ones aside), **not held** when one
failed or is missing (its first message says why: a limit exceeded, a sandbox that could not
start under it), **not judged** when no bound applied or every check was skipped.  The words
of how it was enforced come from the cell's rows (their ``note``), as the measurement wrote them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import runtimes
from harness.validate.checks import Case, Check
from runtimes.declaration import LIMIT_KINDS


@dataclass(frozen=True)
class Held:
    case: Case
    verdict: str  # held | not held | not judged
    how: str  # how the backend enforced it, in its declaration's words ("" when no row says)
    why: str  # the checks behind the verdict

    def line(self) -> str:
        how = f" — {self.how}" if self.how else ""
        return f"{self.verdict.upper():<10} {self.case.describe()}{how} ({self.why})"


def enforced_elsewhere(backend: str) -> bool:
    """Its declaration names another enforcer than its own cgroup for some limit."""
    return runtimes.known(backend) and any(runtimes.declaration(backend).enforcement_note(k) for k in LIMIT_KINDS)


def held(checks: Sequence[Check], run_cases: Sequence[Case]) -> list[Held]:
    """One verdict per cell of each backend ``enforced_elsewhere``, in the cases' order."""
    out = []
    for case in run_cases:
        if not enforced_elsewhere(case.backend):
            continue
        words = set(runtimes.declaration(case.backend).enforcement.values())
        how = "; ".join(n for n in case.notes if n in words)
        mine = [c for c in checks if c.name.startswith(f"{case.describe()} · ")]
        bad = [c for c in mine if c.failed]
        passed = sum(c.outcome == "pass" for c in mine)
        if bad:
            out.append(Held(case, "not held", how, bad[0].message))
        elif passed:
            out.append(Held(case, "held", how, f"{passed} check{'s' if passed > 1 else ''} passed"))
        else:
            why = mine[0].message if mine else "no bound of the baseline applies"
            out.append(Held(case, "not judged", how, why))
    return out
