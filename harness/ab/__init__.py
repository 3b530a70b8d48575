"""Interleaved A/B sessions (``isobench ab``): two variants of a scenario run alternately on one
host, A B B A A B B A ..., and their paired runs compared (``harness.compare``, ``paired``).

- ``variants``: what A and B are -- option overrides of the scenario, or two commits of the
  project each run from its own git worktree and virtual environment;
- ``session``: the order, the runs, the session record (``ab.json``);
- ``inject``: the validation facility that makes a known change appear in stored values.
"""
