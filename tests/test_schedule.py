"""harness.schedule: shuffled blocks, spread repetitions, warm-ups just in time, host conditions."""

from __future__ import annotations

import tomllib
from collections import Counter

from harness import scenario
from harness.schedule import Conditions, label, plan, spread

TEXT = """
[scenario]
backends = ["bare", "unshare", "container", "vm"]
[[experiment]]
measurement = "startup"
workloads = ["noop"]
repetitions = 30
warmups = 2
overrides = { vm = { repetitions = 3, warmups = 1 } }
"""


def _steps(seed: int = 0):  # type: ignore[no-untyped-def]
    sc = scenario.parse(tomllib.loads(TEXT), "s.toml")
    return plan(sc.cases, sc.backends, {}, seed)


def test_each_backend_once_per_block_in_a_seeded_shuffled_order() -> None:
    steps = _steps()
    measured = [s for s in steps if not s.warmup]
    for block in range(30):
        names = [s.backend for s in measured if s.block == block]
        assert len(names) == len(set(names))
    assert [(s.backend, s.block) for s in steps] == [(s.backend, s.block) for s in _steps()]  # reproducible
    assert [s.backend for s in steps] != [s.backend for s in _steps(seed=1)]
    orders = {tuple(s.backend for s in measured if s.block == b and s.backend != "vm") for b in range(30)}
    assert len(orders) >= 4  # not one fixed order
    before = Counter((a.backend, b.backend) for a, b in zip(measured, measured[1:], strict=False)
                     if b.backend == "container")
    assert len(before) >= 2  # the container follows more than one backend


def test_few_repetitions_are_spread_across_the_run_and_warm_up_just_before() -> None:
    steps = _steps()
    vm = [i for i, s in enumerate(steps) if s.backend == "vm"]
    assert [steps[i].warmup for i in vm] == [True, False, False, False]
    assert vm[1] == vm[0] + 1  # its warm-up right before its first measured sample
    blocks = [steps[i].block for i in vm[1:]]
    assert blocks == spread(3, 30) == [5, 15, 25]
    bare = [s for s in steps if s.backend == "bare"]
    assert [s.warmup for s in bare[:3]] == [True, True, False]
    assert sum(not s.warmup for s in bare) == 30


def test_spread_and_labels() -> None:
    assert spread(1, 10) == [5] and spread(10, 10) == list(range(10)) and spread(12, 10) == list(range(10))
    assert len(set(spread(7, 9))) == 7
    assert label(None) is None and label(_steps()[0]).endswith("(warm-up)")


def test_conditions_are_read_from_proc() -> None:
    c = Conditions()
    got = c.read()
    assert got["load1"] >= 0 and got["harness_rss_mib"] > 1
    assert 0 <= c.read().get("steal_pct", 0) <= 100
