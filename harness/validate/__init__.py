"""The enforcement regression gate (``isobench validate RUN_DIR --baseline FILE``).

A baseline is a TOML list of bounds, each keyed by backend (``"*"`` = every
backend of the run), measurement and case params::

    [baseline]
    optional_backends = ['vm']     # no rows for these is "skipped", not "missing"

    [[bound]]
    backend = "*"                  # a named backend's bound replaces "*" for that backend
    measurement = "cpu_quota"
    metric = "cpu_ratio"
    params = { threads = 1 }       # optional: cases whose params include these values
    when = "quota < threads"       # optional: a condition on the case params
    require = "nr_throttled >= 0.8 * nr_periods"   # optional: a precondition on the case's
                                   # measured medians (and params); false = skipped, with why
    stat = "median"                # median (default) | mean | min | max | all (every sample)
    min = 0.95                     # numbers, or expressions over the params: max = "limit"
    max = 1.05                     # equals = 1 is short for min = max = 1
    optional = false               # true: matching no case is "skipped", not "missing"
    exception = false              # true: a reasoned departure from the general bound (why = the reason)
    why = "CFS bandwidth control delivers the quota within 5 %"

Every (bound, backend, case) pair is one check and one JUnit testcase.  A
bound that matches no case of a backend of the run is **missing**, which fails
like a violation (the gate must not pass because a measurement did not run).
Failed repetitions in a checked case are a failure of their own.  A case
whose ``require`` is false is **skipped** with the values that made it so:
e.g. a CPU quota cannot be judged on under-delivery when a busy host never
let the workload reach it (the cgroup was rarely throttled).

``--update-baseline`` writes a baseline derived from the run instead (see
``derive``): per backend and case, bands around what was observed.
``--self-test`` checks the run untouched and mutated (see ``selftest``): the
gate must pass the first and fail every mutation, naming the mutated cell.

The package: ``expr`` (the expression language), ``baseline`` (the file),
``checks`` (judging a run), ``junit``, ``derive``, ``selftest``; the command
line is ``harness.commands.validate``.
"""

from __future__ import annotations

from pathlib import Path

from harness.validate.baseline import Baseline, Bound, load_baseline, parse_baseline, write_baseline
from harness.validate.checks import Case, Check, cases, check_case, run_checks
from harness.validate.derive import derive
from harness.validate.expr import BaselineError, Expr
from harness.validate.junit import junit

__all__ = ["Baseline", "BaselineError", "Bound", "Case", "Check", "Expr", "cases", "check_case",
           "derive", "junit", "load_baseline", "parse_baseline", "run_checks", "write_baseline"]

#: the shipped baseline, relative to a checkout (where nox and CI run)
DEFAULT_BASELINE = Path("baselines/enforcement.toml")
