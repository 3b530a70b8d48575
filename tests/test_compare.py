"""isobench compare as an A/B tool: known false-alarm rate, power, pooling, normalisation, calibration."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pytest

from harness import compare
from harness.commands import compare as command
from harness.results import MANIFEST, load
from harness.stats import abtest, family
from harness.stats.prior import Prior
from tests import synth

MEAS = ("startup", "memory")
FAST = ("--bootstraps", "499")  # keeps the suite fast; the verdicts do not hinge on it


def _args(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    command.add_arguments(p)
    return p.parse_args([*argv, *FAST])


def _compare(base, new, **kw):  # type: ignore[no-untyped-def]
    return compare.compare(base, new, bootstraps=499, **kw)


def _scaled(backend: str, metrics: tuple[str, ...], factor: float):  # type: ignore[no-untyped-def]
    return lambda b, m, k: factor if b == backend and k in metrics else 1.0


@pytest.fixture(autouse=True)
def _pages_in_tmp(tmp_path, monkeypatch):
    """compare writes its page under ./reports by default: keep it out of the checkout."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    r = tmp_path_factory.mktemp("cmp") / "results"
    kw = dict(measurements=MEAS, reps=30)
    return {
        "base": synth.make_run(r, run_id="base", seed=5, **kw),
        "same": synth.make_run(r, run_id="same", seed=6, **kw),  # A/A: same profile, other draws
        "slower": synth.make_run(r, run_id="slower", seed=5, **kw,
                                 scale=_scaled("container", ("launch_to_ready", "launch_to_exit"), 1.15)),
        "faster": synth.make_run(r, run_id="faster", seed=9, **kw,
                                 scale=_scaled("vm", ("pss_overhead",), 0.8)),
        "drift": synth.make_run(r, run_id="drift", seed=6, **kw,  # the whole host 12 % slower
                                scale=lambda b, m, k: 1.12 if m == "startup" else 1.0),
    }


def test_a_and_a_prime_exit_0_and_nothing_regresses(runs, capsys):
    assert command.main(_args(str(runs["base"]), str(runs["same"]))) == 0
    out = capsys.readouterr().out
    assert "**regression**" not in out and "| backend" in out
    rows = _compare(load(runs["base"]), load(runs["same"]))
    assert any(r.verdict == "equivalent" for r in rows)


def test_container_launch_raised_15_percent_exits_1_naming_the_container_rows(runs, capsys, tmp_path):
    md = tmp_path / "out" / "cmp.md"
    assert command.main(_args(str(runs["base"]), str(runs["slower"]), "--markdown", str(md))) == 1
    out = capsys.readouterr().out
    assert md.read_text().strip() == out.strip()
    rows = _compare(load(runs["base"]), load(runs["slower"]))
    bad = {(r.key["backend"], r.key["metric"]) for r in rows if r.verdict == "regression"}
    assert bad == {("container", "launch_to_ready"), ("container", "launch_to_exit")}
    assert all(r.change == pytest.approx(0.15, abs=1e-6) and r.q < 0.01
               for r in rows if r.verdict == "regression")
    assert "**regression**" in out


def test_a_regression_within_the_margin_is_not_one(runs):
    assert command.main(_args(str(runs["base"]), str(runs["slower"]), "--threshold", "0.25")) == 0


def test_improvement_is_not_a_failure(runs):
    rows = _compare(load(runs["base"]), load(runs["faster"]))
    assert ("vm", "pss_overhead") in {(r.key["backend"], r.key["metric"]) for r in rows
                                      if r.verdict == "improvement"}
    assert not [r for r in rows if r.verdict == "regression"]


def test_host_drift_cancels_when_normalised_to_the_reference(runs):
    raw = _compare(load(runs["base"]), load(runs["drift"]))
    assert any(r.verdict == "regression" for r in raw)  # every backend 12 % slower: real, but the host's
    norm = _compare(load(runs["base"]), load(runs["drift"]), reference="bare")
    assert not [r for r in norm if r.verdict == "regression"]
    assert not [r for r in norm if r.key["backend"] == "bare" and r.key["unit"] == "ms"]  # the yardstick
    slower = _compare(load(runs["base"]), load(runs["slower"]), reference="bare")
    assert {(r.key["backend"], r.key["metric"]) for r in slower if r.verdict == "regression"} == \
        {("container", "launch_to_ready"), ("container", "launch_to_exit")}


def test_a_host_that_moved_under_every_backend_is_said_to_have_moved(runs, capsys):
    """The whole host 12 % slower: bare, which runs none of our code, regressed too -- compare says
    so above the rows; a change of the container alone raises no such line."""
    assert command.main(_args(str(runs["base"]), str(runs["drift"]))) == 1
    out = capsys.readouterr().out
    assert "**The host itself changed between the runs:** bare moved in" in out
    assert command.main(_args(str(runs["base"]), str(runs["slower"]))) == 1
    assert "The host itself changed" not in capsys.readouterr().out


def test_several_runs_a_side_pool_with_run_as_a_level(runs):
    rows = _compare([load(runs["base"]), load(runs["same"])], [load(runs["slower"]), load(runs["same"])])
    r = next(r for r in rows if (r.key["backend"], r.key["metric"], r.key["workload"]) ==
             ("container", "launch_to_ready", "noop"))
    assert r.runs == (2, 2) and len(r.base) == 60
    assert r.verdict != "regression"  # one slow run of two is not a significant shift of the pool


def test_calibration_learns_each_series_run_to_run_variation(runs, tmp_path, capsys):
    """Three A/A runs of their own, one of them on a host 12 % slower: the container's
    launch_to_ready median moved by sd(log 1, 1, 1.12) ~ 6.5 % from run to run; with that counted
    (a prior with 2 degrees of freedom), another 12 % slower run is no regression, and the table
    says what the test counted.  (Before issue 23 this test calibrated on the very runs it then
    compared; that is now refused, below.)"""
    from harness.stats.calibration import SCHEMA

    r = tmp_path / "aa"
    kw = dict(measurements=MEAS, reps=30)
    slow = lambda b, m, k: 1.12 if m == "startup" else 1.0  # noqa: E731
    three = [str(synth.make_run(r, run_id="aa-1", seed=21, **kw)), str(synth.make_run(r, run_id="aa-2", seed=22, **kw)),
             str(synth.make_run(r, run_id="aa-3", seed=23, scale=slow, **kw))]
    noise = tmp_path / "noise.json"
    assert command.main(_args("--calibrate", *three, "--noise", str(noise))) == 0
    data = json.loads(noise.read_text())
    assert data["schema"] == SCHEMA and data["runs"] == ["aa-1", "aa-2", "aa-3"]
    assert data["host"]["hostname"] == "hostA" and data["scenario"]["name"] == "synthetic"  # provenance
    learned = data["raw"]["container|startup|noop|launch_to_ready|ms|"]
    assert learned["runs"] == 3 and learned["df"] == 2 and learned["run_sd"] == pytest.approx(0.065, abs=0.03)
    assert learned["largest_change"] == pytest.approx(0.12, abs=0.06)
    assert 0 < learned["within"] < learned["var"]  # the runs' own sampling error, kept apart
    capsys.readouterr()
    assert command.main(_args(str(runs["base"]), str(runs["drift"]))) == 1  # uncalibrated: the host's 12 %
    assert "uncalibrated" in capsys.readouterr().out
    assert command.main(_args(str(runs["base"]), str(runs["drift"]), "--noise", str(noise))) == 0
    assert "run-to-run variation learned from A/A runs" in capsys.readouterr().out
    assert command.main(_args("--calibrate", str(runs["base"]), "--noise", str(noise))) == 2


def test_a_calibration_is_never_applied_unasked_nor_to_its_own_runs(runs, tmp_path, capsys, monkeypatch):
    """Fitted to the runs it judges, a calibration would hide the very difference asked about: one
    line, exit 2.  A results/noise.json is only mentioned, not applied, unless --noise names it."""
    noise = tmp_path / "results" / "noise.json"
    monkeypatch.chdir(tmp_path)
    assert command.main(_args("--calibrate", *(str(runs[k]) for k in ("base", "same", "drift")))) == 0
    assert noise.is_file()
    capsys.readouterr()
    assert command.main(_args(str(runs["base"]), str(runs["drift"]), "--noise", str(noise))) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "learned from base, drift, a run being compared" in err
    assert command.main(_args(str(runs["base"]), str(runs["drift"]))) == 1  # not applied: the host's 12 % shows
    out = capsys.readouterr().out
    assert "applied only when named" in out and "uncalibrated" in out


def test_a_calibration_from_another_host_or_scenario_is_said_to_be(runs, tmp_path, capsys):
    from harness.stats.calibration import Calibration, SeriesNoise, write

    path = tmp_path / "elsewhere.json"
    write(path, Calibration({"container|startup|noop|launch_to_ready|ms|": SeriesNoise(0.001, 5)}, runs=("x1", "x2"),
                            host={"hostname": "hostB", "kernel": "6.1.0-56-amd64", "cpu_model": "?"},
                            scenario={"name": "other", "sha256": "0"}, path=str(path)))
    assert command.main(_args(str(runs["base"]), str(runs["same"]), "--noise", str(path))) == 0
    out = capsys.readouterr().out
    assert "the calibration's host hostname is hostB, the compared runs' hostA" in out
    assert "the calibration's scenario name is other, the compared runs' synthetic" in out


#: a run-to-run sd of 5 % known exactly (infinite degrees of freedom)
KNOWN_5 = Prior(0.05 ** 2, math.inf)


def _runs(rng: np.random.Generator, k: int, run_sd: float, factor: float = 1.0, n: int = 30,
          cv: float = 0.10) -> list[list[float]]:
    """``k`` runs of one series: each run's level moved by its own host state (lognormal, sd
    ``run_sd``), its ``n`` samples lognormal with ``cv`` around it."""
    return [list(10 * factor * math.exp(rng.normal(0, run_sd)) * rng.lognormal(0, cv, n)) for _ in range(k)]


def test_run_to_run_variance_keeps_the_false_alarm_rate_where_samples_alone_do_not():
    """200 A/A pairs of runs whose level moves 5 % from run to run (as this host's container
    launch_to_ready does): a test of the samples alone calls about half of them different; with
    the learned run_sd counted, about alpha of them."""
    rng = np.random.default_rng(11)
    alone, counted = [], []
    for _ in range(200):
        b, n = _runs(rng, 1, 0.05), _runs(rng, 1, 0.05)
        alone.append(family.measure(b, n, abtest.LOWER, bootstraps=199).p)
        counted.append(family.measure(b, n, abtest.LOWER, bootstraps=199, calibration=KNOWN_5).p)
    assert np.mean(np.asarray(alone) < abtest.ALPHA) > 0.3
    assert np.mean(np.asarray(counted) < abtest.ALPHA) == pytest.approx(abtest.ALPHA, abs=0.035)


def test_three_runs_a_side_find_a_15_percent_change_that_one_run_a_side_cannot_tell_from_noise():
    """With a 5 % run-to-run sd, one run a side leaves a 15 % change at a median p ~ 0.06 (no match
    for a correction over fifty series); three runs a side bring the median p to ~ 0.002."""
    rng = np.random.default_rng(12)
    one = [family.measure(_runs(rng, 1, 0.05), _runs(rng, 1, 0.05, 1.15), abtest.LOWER, bootstraps=199,
                          calibration=KNOWN_5).p for _ in range(60)]
    three = [family.measure(_runs(rng, 3, 0.05), _runs(rng, 3, 0.05, 1.15), abtest.LOWER, bootstraps=199,
                            calibration=KNOWN_5).p for _ in range(60)]
    assert np.median(three) < 0.01 < 0.02 < np.median(one)
    assert np.mean(np.asarray(three) < 0.01) > 2 * np.mean(np.asarray(one) < 0.01)


def test_cpu_ratio_judged_by_distance_from_one():
    base = [[1.00, 1.01, 0.99, 1.0, 1.0, 1.01, 0.99, 1.0]]
    drifted = [[v - 0.1 for v in base[0]]]  # 10 points further from 1
    e = family.measure(base, drifted, abtest.ONE)
    assert e.change == pytest.approx(0.095) and e.p < 0.01  # median |x - 1|: 0.005 -> 0.1
    assert abtest.verdict(e, e.p, abtest.ONE, 0.05)[0] == "regression"
    closer = family.measure([[0.8] * 4 + [0.81] * 4], [[0.99] * 4 + [1.0] * 4], abtest.ONE)
    assert abtest.verdict(closer, closer.p, abtest.ONE, 0.05)[0] == "improvement"


def test_a_change_below_the_resolution_is_none_however_large_relative_to_a_median_near_0():
    """Quiet A/A runs moved the container's pss_overhead from -0.010 to -0.039 MiB: -300 % of a median
    near 0, and seven pages.  Within the unit's resolution that is equivalent, not an improvement;
    the same change on a metric without a resolution stays one."""
    from harness.measure import catalogue

    base = [[-0.0098, -0.0098, -0.0078, -0.0117, -0.0098, -0.0098]]
    new = [[-0.0391, -0.0391, -0.0371, -0.041, -0.0391, -0.0391]]
    e = family.measure(base, new, abtest.LOWER)
    assert e.p < 0.01 and e.change == pytest.approx(-3.0, rel=0.01)
    res = catalogue().resolution("pss_overhead", "MiB")
    assert res == pytest.approx(1 / 16)
    assert abtest.verdict(e, e.p, abtest.LOWER, 0.05, resolution=res) == ("equivalent", (
        "the medians differ by less than the resolution (0.0625)"))
    assert abtest.verdict(e, e.p, abtest.LOWER, 0.05)[0] == "improvement"
    assert catalogue().resolution("launch_to_ready", "ms") == 0.0
    raised = family.measure(base, [[v + 0.5 for v in new[0]]], abtest.LOWER)  # half a MiB more: real
    assert abtest.verdict(raised, raised.p, abtest.LOWER, 0.05, resolution=res)[0] == "regression"


def test_too_few_samples_is_inconclusive_never_no_change():
    e = family.measure([[10, 10.1, 9.9]], [[20, 20.1, 19.9]], abtest.LOWER)
    verdict, why = abtest.verdict(e, e.p, abtest.LOWER, 0.05)
    assert verdict == "inconclusive" and "too few samples" in why


def test_false_alarm_rate_on_a_and_a_data_at_the_configured_level():
    """200 A/A series (n=30, cv 10 %): p < alpha about alpha of the time, a regression verdict (one
    direction, and beyond the margin) at most that often, and one family of 50 A/A series adjusted
    together raises no alarm."""
    rng = np.random.default_rng(77)
    ps, verdicts = [], []
    for i in range(200):
        a, b = rng.lognormal(0, 0.1, 30), rng.lognormal(0, 0.1, 30)
        e = family.measure([a], [b], abtest.LOWER, bootstraps=499, seed=i)
        ps.append(e.p)
        verdicts.append(abtest.verdict(e, e.p, abtest.LOWER, abtest.THRESHOLD)[0])
    ps_arr = np.array(ps)
    assert np.mean(ps_arr < abtest.ALPHA) == pytest.approx(abtest.ALPHA, abs=0.035)  # calibrated: 10 of 200
    assert np.mean(ps_arr < 0.01) <= 0.03
    assert verdicts.count("regression") <= abtest.ALPHA * len(verdicts)
    q = abtest.adjust(ps_arr[:50])
    assert not (q < abtest.ALPHA).any()


def test_a_ten_percent_shift_is_detected_at_n_30():
    """n=30 a side, cv 5 %: a 10 % slowdown is called a regression (power >= 90 %)."""
    rng = np.random.default_rng(78)
    hits = 0
    for i in range(40):
        a, b = rng.lognormal(0, 0.05, 30), rng.lognormal(np.log(1.1), 0.05, 30)
        e = family.measure([a], [b], abtest.LOWER, bootstraps=499, seed=i)
        hits += abtest.verdict(e, e.p, abtest.LOWER, abtest.THRESHOLD)[0] == "regression"
    assert hits >= 36


def test_holm_and_bh():
    p = [0.001, 0.01, 0.02, 0.5, math.nan]
    bh, holm = abtest.adjust(p, "bh"), abtest.adjust(p, "holm")
    assert holm[:4] == pytest.approx([0.004, 0.03, 0.04, 0.5]) and math.isnan(holm[4])
    assert (bh[:4] <= holm[:4] + 1e-12).all()


def test_directions():
    assert compare.direction("launch_to_ready") == compare.LOWER
    assert compare.direction("phase_clone") == compare.LOWER
    assert compare.direction("pss_overhead") == compare.LOWER
    assert compare.direction("mem_available") == compare.NONE
    assert compare.direction("cpu_ratio") == compare.ONE
    assert compare.direction("something_new", "ms") == compare.LOWER
    assert compare.direction("something_new", "count") == compare.NONE


def test_the_reference_is_read_from_the_manifest_and_from_the_scenario_text_of_older_runs():
    text = '[scenario]\nname = "s"\nbackends = ["bare", "container"]\nreference = "bare"\n'
    assert compare.reference_of({"scenario": {"reference": "container", "text": text}}) == "container"
    assert compare.reference_of({"scenario": {"reference": None, "text": text}}) is None  # recorded: none
    assert compare.reference_of({"scenario": {"text": text}}) == "bare"  # written before the runner recorded it
    assert compare.reference_of({"scenario": {"text": "not toml ["}}) is None


def test_series_only_in_one_run(runs, tmp_path):
    only_bare = synth.make_run(tmp_path, run_id="only-bare", seed=5, backends=("bare",), measurements=MEAS)
    rows = _compare(load(runs["base"]), load(only_bare))
    assert any(r.verdict == "only in base" and r.key["backend"] == "container" for r in rows)
    assert all(math.isnan(r.p) for r in rows if r.verdict == "only in base")


def test_bad_input_exits_2_with_one_line(runs, tmp_path, capsys):
    assert command.main(_args(str(runs["base"]), str(tmp_path / "missing"))) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "not a run directory" in err
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / MANIFEST).write_text("{not json")
    assert command.main(_args(str(broken), str(runs["base"]))) == 2
    assert "unreadable manifest" in capsys.readouterr().err
    other = tmp_path / "other"
    other.mkdir()
    (other / MANIFEST).write_text(json.dumps({"schema": "something/else"}))
    assert command.main(_args(str(runs["base"]), str(other))) == 2
    assert command.main(_args(str(runs["base"]))) == 2
    assert command.main(_args(str(runs["base"]), str(runs["same"]), "--normalise")) == 2
    assert "reference" in capsys.readouterr().err
    # `--normalise A B`: the option took run A for a backend name
    assert command.main(_args("--normalise", str(runs["base"]), str(runs["same"]))) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "takes a backend name, not the run" in err
    noise = tmp_path / "old-noise.json"
    noise.write_text(json.dumps({"schema": "isobench/noise", "raw": {"x": 0.1}}))  # the first format
    assert command.main(_args(str(runs["base"]), str(runs["same"]), "--noise", str(noise))) == 2
    assert "run --calibrate again" in capsys.readouterr().err


def test_compare_writes_a_page_with_an_ab_chart_per_changed_metric(runs, tmp_path, capsys):
    out = tmp_path / "page"
    assert command.main(_args(str(runs["base"]), str(runs["slower"]), "--out", str(out))) == 1
    assert f"page {out / 'compare.html'}" in capsys.readouterr().err
    html = (out / "compare.html").read_text()
    md = (out / "compare.md").read_text()
    assert "regression: container · startup/noop · launch_to_ready" in md
    charts = sorted(p.name for p in (out / "charts").glob("*.png"))
    assert charts[0] == "ab_00.png" and "compare_overview.png" in charts
    assert html.count('src="data:image/png;base64,') == len(charts)
    assert "+15.0%" in html and "<details>" in html


# -- on two real runs of the default scenario, back to back on the development machine --------------
AB = [Path(__file__).parent.parent / "docs" / "runs" / f"dev-host-ab-{x}" for x in "AB"]


def _raised(run: Path, dest: Path, factor: float) -> Path:
    """A copy of ``run`` whose container launch_to_ready/launch_to_exit samples are ``factor`` times larger."""
    dest.mkdir(parents=True)
    (dest / MANIFEST).write_text((run / MANIFEST).read_text())
    lines = []
    for line in (run / "samples.jsonl").read_text().splitlines():
        r = json.loads(line)
        if (r["backend"], r["metric"]) in {("container", "launch_to_ready"), ("container", "launch_to_exit")} \
                and r["value"] is not None:
            r["value"] *= factor
        lines.append(json.dumps(r))
    (dest / "samples.jsonl").write_text("\n".join(lines) + "\n")
    return dest


RUNS = Path(__file__).parent.parent / "docs" / "runs"
FIXTURES = Path(__file__).parent / "data" / "runs"  # stored runs only tests read


@pytest.mark.parametrize("pair", [AB, (FIXTURES / "dev-host-default", RUNS / "dev-host-peers")], ids=["ab", "8min"])
def test_real_runs_of_one_commit_raise_no_alarm(pair, tmp_path, capsys):
    """Runs of one commit on the development machine: back to back under load 7-16 from other
    tenants (medians moved by up to 50 %), and 8 minutes apart (the old compare called container
    phase_exec +8 % a regression there): nothing is a regression, raw or normalised."""
    a, b = pair
    for norm in ((), ("--normalise", "unshare")):
        assert command.main(_args(str(a), str(b), *norm, "--out", str(tmp_path / "page"))) == 0
        assert "**regression**" not in capsys.readouterr().out


def test_a_real_run_with_its_container_15_percent_slower_fails_naming_the_container_rows(tmp_path, capsys):
    """dev-host-default (a quiet moment: container cv ~15 %) against itself with the container's
    launch_to_ready/launch_to_exit samples raised 15 %: exit 1, naming exactly those rows.  (In
    the loaded dev-host-ab runs a median's interval spans ±70 % and the same 15 % is inconclusive.)"""
    a = FIXTURES / "dev-host-default"
    slow = _raised(a, tmp_path / "dev-host-default-slow", 1.15)
    assert command.main(_args(str(a), str(slow), "--out", str(tmp_path / "page"))) == 1
    assert "**regression**" in capsys.readouterr().out
    rows = _compare(load(a), load(slow))
    bad = {(r.key["backend"], r.key["metric"]) for r in rows if r.verdict == "regression"}
    assert bad == {("container", "launch_to_ready"), ("container", "launch_to_exit")}


def test_a_calibrated_back_to_back_pair_is_silent_and_says_one_run_a_side_cannot_see_15_percent(tmp_path, capsys):
    """Two quiet back-to-back runs of scenarios/startup.toml (11 s apart) with the run-to-run
    variation learned from six other runs of that session: exit 0, nothing a regression.  With the
    second run's container launch_to_ready/exit raised 15 % at sample level, the container's rows
    have the smallest p of all 112 series, yet one run a side on a host whose run medians move by
    ~5 % cannot call 15 % a regression after the correction over 112 series -- and the table says
    so ("sees >=" above 15 %).  Before issue 23 the container's idle launch_to_ready was called a
    regression here: the 6-run calibration's sd was used as if known (a normal test, no degrees
    of freedom), which is what raised 11 % false alarms per series from 3 calibration runs."""
    from harness.stats.calibration import read

    a, b = RUNS / "dev-host-startup-aa-1", RUNS / "dev-host-startup-aa-2"
    noise = str(RUNS / "dev-host-startup-noise.json")
    assert command.main(_args(str(a), str(b), "--noise", noise, "--out", str(tmp_path / "aa"))) == 0
    out = capsys.readouterr().out
    assert "**regression**" not in out and "run-to-run variation learned from A/A runs" in out
    assert "an older calibration without provenance" in out  # isobench/noise-2: read, unchecked, said
    slow = _raised(b, tmp_path / "dev-host-startup-aa-2-slow", 1.15)
    assert command.main(_args(str(a), str(slow), "--noise", noise, "--out", str(tmp_path / "ab"))) == 0
    capsys.readouterr()
    rows = _compare(load(a), load(slow), noise=read(Path(noise)))
    assert not [r for r in rows if r.verdict == "regression"]
    raised = [r for r in rows if r.key["backend"] == "container" and r.key["metric"] in ("launch_to_ready",
                                                                                          "launch_to_exit")]
    others = [r for r in rows if r not in raised and math.isfinite(r.p)]
    assert min(r.p for r in raised) < min(r.p for r in others)
    assert all(r.detectable > 0.15 for r in raised)
