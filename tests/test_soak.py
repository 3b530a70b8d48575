"""The soak's sampler and slope logic, end to end in a few seconds (issue 25 item 1).

The full soak (``nox -s soak``: 10,000 container launches, 1,000 on crun, 100 guests) takes most
of an hour here and is a measurement, not a test.  This checks the pieces it is made of: the
verdicts on readings whose truth is known (a leak, a flat count, a warm-up, the host's counts),
and a short real soak whose harness leaks one file descriptor every 10 launches on purpose
(``--inject-leak``): the analysis must find that leak, at its rate, and the run must leave nothing.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from harness.soak import analysis, procfs
from harness.soak.sampler import READINGS, Reading, load

ROOT = Path(__file__).resolve().parents[1]


def _readings(values: dict[str, list[float]], per_step: int = 10, backend: str = "container") -> list[Reading]:
    n = len(next(iter(values.values())))
    return [Reading(i * per_step, float(i), {backend: i * per_step}, {q: v[i] for q, v in values.items()})
            for i in range(n)]


def test_a_steady_growth_is_a_leak_and_a_flat_count_is_not() -> None:
    rng = random.Random(25)
    n = 60
    figs = {f.quantity: f for f in analysis.figures(_readings({
        "harness/fds": [12 + i // 2 for i in range(n)],  # one more every 20 launches: 50 per 1,000
        "harness/threads": [2.0] * n,
        "harness/rss_kib": [50_000 + rng.gauss(0, 200) for _ in range(n)],
        "host/cgroups": [400 + 5 * i for i in range(n)],  # others' cgroups: shown, never judged
    }))}
    fds = figs["harness/fds"]
    assert fds.verdict == analysis.LEAK and fds.lo > 0 and 40 <= fds.slope <= 60, fds
    assert (fds.start, fds.warm, fds.end) == (12.0, 15.0, 41.0)
    assert figs["harness/threads"].verdict == analysis.FLAT and figs["harness/threads"].slope == 0
    assert figs["harness/rss_kib"].verdict in (analysis.FLAT, analysis.UNRESOLVED), figs["harness/rss_kib"]
    assert figs["host/cgroups"].verdict == analysis.SHOWN
    assert analysis.leaks(list(figs.values())) == [fds]
    assert fds.late_lo > 0 and "| harness/fds | 12 | 15 | 41 |" in analysis.table([fds])


def test_a_warm_up_is_not_a_leak_and_a_helper_counts_its_own_backend_s_launches() -> None:
    n = 60
    warm = [30_000 + min(i, 3) * 1000 for i in range(n)]  # grows over the first readings, then stays
    readings = _readings({"harness/rss_kib": warm, "container/zygote (native)/rss_kib": [900.0] * n})
    fig = analysis.figure("harness/rss_kib", readings)
    assert fig is not None and fig.verdict == analysis.FLAT and fig.start < fig.end, fig
    # the zygote's x is the container's launches: here half of the run's
    halves = [Reading(r.steps, r.t_s, {"container": r.steps // 2, "oci:crun": r.steps - r.steps // 2},
                      {"container/zygote (native)/fds": 5 + r.steps // 2 / 100}) for r in readings]
    z = analysis.figure("container/zygote (native)/fds", halves)
    assert z is not None and z.slope == pytest.approx(10.0), z  # 1 per 100 of its own launches


def test_a_growth_that_levels_off_is_not_a_leak() -> None:
    """Growth over the first part of the run, none over its second half: an allocator's arenas or
    a bounded buffer filling, shown as "levels off"."""
    n = 80
    fig = analysis.figure("harness/rss_kib", _readings({"harness/rss_kib": [60_000 + 8 * min(i, 35) for i in range(n)]}))
    assert fig is not None and fig.lo > 0 and fig.verdict == analysis.LEVELS, fig
    assert fig.late == 0 and fig not in analysis.leaks([fig])


def test_too_few_readings_give_no_verdict() -> None:
    fig = analysis.figure("harness/fds", _readings({"harness/fds": [1.0, 2.0, 3.0, 4.0]}))
    assert fig is not None and fig.verdict == analysis.UNRESOLVED


def test_the_proc_readers_answer_for_this_process_and_none_for_a_gone_one() -> None:
    me = os.getpid()
    assert (procfs.rss_kib(me) or 0) > 1000 and (procfs.fds(me) or 0) >= 3 and (procfs.threads(me) or 0) >= 1
    assert procfs.rss_kib(2**22 + 1) is None and procfs.fds(2**22 + 1) is None
    assert (procfs.cgroups() or 0) >= 1 and (procfs.mounts() or 0) >= 1


@pytest.mark.privileged
def test_a_short_soak_finds_the_leak_it_was_given_and_leaves_nothing(run_id: str, tmp_path: Path) -> None:
    scen = tmp_path / "short.toml"
    scen.write_text('[scenario]\nname = "short-soak"\nbackends = ["container"]\nwarmups = 0\n'
                    '[[experiment]]\nmeasurement = "startup"\nworkloads = ["noop"]\nrepetitions = 200\n')
    done = subprocess.run([sys.executable, "-m", "harness", "soak", str(scen), "--results", str(tmp_path),
                           "--run-id", run_id, "--every", "5", "--inject-leak", "10", "--no-progress"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "self-test passed" in done.stderr
    run_dir = tmp_path / run_id
    readings = load(run_dir)
    assert readings[0].steps == 0 and readings[-1].steps == 200 and len(readings) == 41
    assert {"container/zygote (native)/rss_kib", "harness/fds", "run/cgroups", "host/cgroups"} <= set(readings[-1].values)
    assert readings[-1].values["run/cgroups"] == 0 and readings[-1].values["run/mounts"] == 0
    figs = {f["quantity"]: f for f in json.loads((run_dir / "soak.json").read_text())["figures"]}
    leak = figs["harness/fds"]
    assert leak["verdict"] == analysis.LEAK and 90 <= leak["slope"] <= 110, leak  # one per 10 launches
    assert figs["container/zygote (native)/threads"]["verdict"] == analysis.FLAT
    assert json.loads((run_dir / "soak.json").read_text())["left"] == []
    assert (run_dir / READINGS).exists() and (run_dir / "soak.md").read_text().startswith("| quantity |")
