"""Findings, warnings and the headline numbers: pure logic on synthetic samples and runs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.report import caveats, findings, model
from harness.stats import estimate, numbers
from harness.stats.numbers import PROSE
from tests import synth


def test_a_median_has_an_interval_only_from_six_samples():
    few = estimate.median([3.0, 1.0, 2.0, 5.0, 4.0])
    assert few.value == 3.0 and few.n == 5 and not few.resolved and few.unresolved.startswith("too few samples")
    enough = estimate.median([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, None, math.nan])
    assert enough.n == 6 and enough.resolved and enough.lo <= enough.value <= enough.hi


def test_ratio_of_medians_with_interval():
    rng = np.random.default_rng(1)
    r = estimate.ratio(rng.normal(30, 1, 20), rng.normal(10, 0.3, 20))
    assert r.resolved and r.lo < 3.0 < r.hi and r.value == pytest.approx(3.0, rel=0.05)
    assert not estimate.ratio([30.0] * 3, [10.0] * 20).resolved


@pytest.mark.parametrize("value,text", [(29.689, "29.7"), (0.01403, "0.0140"), (3805.2, "3,810"),
                                        (0.99961, "1.00"), (2.0, "2.00"), (0.0, "0")])
def test_three_significant_digits(value, text):
    assert numbers.fmt(value, PROSE) == text


def test_stated_values_carry_interval_and_n():
    e = estimate.median([10.0, 11.0, 12.0, 9.0, 10.5, 10.2, 9.8])
    assert numbers.stated(e, "ms") == f"10.2 ms [{numbers.fmt(e.lo, PROSE)}–{numbers.fmt(e.hi, PROSE)}] (n=7)"
    slow = estimate.median([8020.0, 7500.0, 8200.0])
    assert numbers.stated(slow, "ms") == "8.02 s (n=3)"
    assert "not resolved: too few samples" in findings.unresolved(slow)


def rules(values, unit="ms"):
    return {rule for rule, _ in caveats.check(values, unit)}


def test_unimodal_skewed_latencies_raise_no_warning():
    for seed in range(20):  # what a healthy startup series looks like: log-normal, 30 samples
        x = np.random.default_rng(seed).lognormal(np.log(10), 0.05, 30)
        assert rules(x) == set(), (seed, caveats.check(x, "ms"))


def test_two_clusters_are_bimodal():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0.11, 0.005, 8), rng.normal(5.5, 0.3, 22)])
    rng.shuffle(x)
    found = dict(caveats.check(x, "ms"))
    assert "bimodal" in found and "27% of samples near 0.1" in found["bimodal"]


def test_drift_over_the_run():
    rng = np.random.default_rng(0)
    x = np.linspace(10, 14, 30) * rng.lognormal(0, 0.01, 30)  # the host got slower as the run went on
    found = dict(caveats.check(x, "ms"))
    assert "drift" in found and found["drift"].startswith("+2")


def test_wide_interval_and_too_few():
    rng = np.random.default_rng(0)
    assert "wide interval" in rules(rng.lognormal(np.log(10), 0.6, 12))
    assert rules([1.0, 2.0, 3.0]) == {"too few samples"}


def test_synthetic_run_findings_and_warnings(tmp_path):
    run = synth.make_run(tmp_path / "results", run_id="run-f", reps=8)
    data = model.load([run])
    text = findings.plain(findings.findings(data))
    assert "bare: 1.0" in text and "(the reference)" in text
    assert "container: 12.0 ms [" in text and "× bare [" in text
    assert "vm (TCG, emulated): 9.17 s [" in text
    assert "CPU quotas" in text and "Memory limits" in text and "held by every backend" in text
    rows = findings.rows(data)
    ratio = next(r.ratio for r in rows if r.family == "startup" and r.backend == "container")
    assert ratio is not None and ratio.lo < 12.0 < ratio.hi
    ws = caveats.warnings(data)
    # the synthetic vm timeout, and the PSS of bare (0.3 MiB ± 0.05) and container: at n=8 the
    # median's order-statistic interval runs from the smallest to the largest sample
    assert [(w.backend, w.rule, w.what.split(" (")[0]) for w in ws] == [
        ("bare", "wide interval", "memory/idle pss"), ("container", "wide interval", "memory/idle pss"),
        ("vm (TCG, emulated)", "failed samples", "startup/noop")]
    assert ws[0].what.startswith("memory/idle pss (±") and ws[0].what.endswith("%)")
    assert "InstanceTimeout" in ws[2].detail and "logs/" in ws[2].action


def test_too_few_samples_fold_into_one_warning_per_backend(tmp_path):
    run = synth.make_run(tmp_path / "results", run_id="run-few", reps=3, backends=("bare", "container"),
                         measurements=("startup", "memory"))
    ws = caveats.warnings(model.load([run]))
    assert [(w.backend, w.rule) for w in ws] == [("bare", "too few samples"), ("container", "too few samples")]
    assert "startup/noop launch_to_ready (n=3)" in ws[1].what and "memory/idle pss (n=3)" in ws[1].what
    assert "raise repetitions to ≥ 6" in ws[1].action


def test_cpu_quota_verdicts_tell_a_busy_host_from_a_broken_quota(tmp_path):
    """Over-delivery fails; under-delivery while the cgroup was rarely throttled is the host's doing."""
    run = synth.make_run(tmp_path / "results", run_id="run-cpu", reps=5, backends=("bare", "container", "vm"),
                         measurements=("cpu_quota",),
                         overrides={("bare", "cpu_ratio"): 1.2,  # more CPU than the quota: broken
                                    ("container", "cpu_ratio"): 0.5, ("container", "nr_throttled"): 1})
    line = next(x for f in findings.findings(model.load([run])) for x in f.lines if x.startswith("CPU quotas"))
    assert "held by vm (TCG, emulated) (within " in line
    assert "not held by bare (8 of 8 cells off by more than 5%, worst 20.0%)" in line
    assert "not judged for container (8 cells) — the busy host kept the workload below its quota" in line


def test_wide_intervals_fold_per_backend_and_name_a_busy_host(tmp_path):
    run = synth.make_run(tmp_path / "results", run_id="run-wide", reps=8, backends=("bare", "container"),
                         measurements=("startup",))
    data = model.load([run])
    rng = np.random.default_rng(3)
    noisy = data.rows["metric"].eq("launch_to_ready") & data.rows["backend"].eq("container")
    data.rows.loc[noisy, "value"] = rng.lognormal(np.log(12), 0.8, int(noisy.sum()))
    data.runs[0].manifest["host"]["loadavg"] = [7.5, 7.0, 6.0]
    ws = caveats.warnings(data)
    wide = [w for w in ws if w.rule == "wide interval"]
    assert len(wide) == 1 and wide[0].backend == "container"
    assert "startup/noop launch_to_ready (±" in wide[0].what and "startup/idle launch_to_ready (±" in wide[0].what
    assert "the load average was 7.5 on 2 cores" in wide[0].action
