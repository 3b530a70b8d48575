"""History: every run's series over commits, kernels and dates, with the steps in them.

``isobench history add RUN…`` summarises each run's series (median, its interval, the run's value
on the A/B test's scale and its sampling error: ``record``) and appends them to an append-only
store under ``results/history/`` (``store``), keyed by host, kernel, cgroup version, backend,
the project's commit and the runtimes' versions.  ``isobench history report`` reads it back,
draws each headline metric (every enforcement cell among them) over the runs, and finds the
steps in each line (``steps``: the run-as-unit test of ``harness.stats`` between neighbours,
Holm-corrected over the line's candidate points), naming the first run, commit or kernel after
each (``page``).
"""

from pathlib import Path

#: where the history is kept (``isobench history --history DIR``)
DEFAULT = Path("results/history")
#: which neighbouring runs form one group, whose boundaries are tested for a step
BYS = ("commit", "kernel", "date", "run")
#: what makes a line besides its series: its host and cgroup version, or also its kernel
SPLITS = ("host", "kernel")
#: runs on each side of a tested boundary
WINDOW = 5
