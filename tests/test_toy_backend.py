"""A backend registered at run time gets every generic path: scenario options, the runner
(prepare before any sample, every instance owned), the report and compare."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import runtimes
from harness import compare, report, results, runner, scenario
from tests import toy_backend

SCENARIO = """
[scenario]
name = "toy"
backends = ["bare", "toy"]
repetitions = 3
warmups = 0

[backend.toy]
flavour = "spicy"

[[experiment]]
measurement = "startup"
workloads = ["noop"]

[[experiment]]
measurement = "memory"
repetitions = 2
settle = 0.1
"""


@pytest.fixture
def toy():
    unregister = runtimes.register(toy_backend.DECLARATION)
    toy_backend.EVENTS.clear()
    yield
    unregister()


@pytest.fixture
def run_dir(toy, tmp_path: Path) -> Path:
    sc = scenario.parse(__import__("tomllib").loads(SCENARIO), "toy.toml", SCENARIO)
    return runner.run(sc, tmp_path / "results", progress=False)


def test_registering_is_all_it_takes(toy) -> None:
    assert runtimes.names()[-1] == "toy" and runtimes.get("toy").name == "toy"
    with pytest.raises(ValueError, match="already registered"):
        runtimes.register(toy_backend.DECLARATION)


def test_unknown_option_of_the_toy_names_the_key(toy) -> None:
    bad = SCENARIO.replace('flavour = "spicy"', 'flavor = "spicy"')
    with pytest.raises(scenario.ScenarioError, match=r"backend\.toy\.flavor: unknown option of backend toy"):
        scenario.parse(__import__("tomllib").loads(bad), "toy.toml")


def test_the_runner_prepares_then_measures_and_counts_every_step(run_dir: Path) -> None:
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "completed"
    assert manifest["done_steps"] == manifest["planned_steps"] > 0  # counted, not read off a progress bar
    assert manifest["backends"]["toy"] == {"toy": True}
    assert manifest["scenario"]["reference"] is None  # recorded, so compare needs no TOML of the scenario
    assert toy_backend.EVENTS[0] == ("prepare", None)
    assert [e for e in toy_backend.EVENTS if e[0] == "prepare"] == [("prepare", None)]
    rows = results.read_samples(run_dir)
    assert all(r["status"] == "ok" for r in rows), [r["error"] for r in rows if r["status"] != "ok"]
    toy = {r["metric"] for r in rows if r["backend"] == "toy"}
    assert {"launch_to_ready", "launch_to_exit", "pss", "pss_overhead"} <= toy


def test_report_and_compare_treat_the_toy_like_any_backend(run_dir: Path, tmp_path: Path) -> None:
    out = report.build([run_dir], tmp_path / "report")
    startup = (out / "tables" / "startup.csv").read_text()
    assert "toy," in startup and "bare," in startup
    peers = (out / "tables" / "peers.csv").read_text()  # declared peer_of the reference
    assert "\ntoy,bare," in peers
    svg = "".join(p.read_text() for p in (out / "charts").glob("*.svg"))
    assert toy_backend.DECLARATION.colour.lower() in svg.lower()
    rows = compare.compare(results.load(run_dir), results.load(run_dir))
    mine = [r for r in rows if r.key["backend"] == "toy"]
    assert mine and not {r.verdict for r in mine} & {"regression", "improvement"}  # a run against itself
