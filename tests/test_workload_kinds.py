"""A workload kind registered at run time (``runtimes.workload_kinds``) gets every generic path:
its ``[workload.NAME]`` tables checked and loaded by the scenario, and its workloads launched,
measured and recorded by the runner like the catalog's, with no other file changed."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pytest

from harness import results, runner, scenario
from runtimes import workload_kinds
from runtimes.workloads import BUSYBOX, MARKER, MARKER_FD, READY, ProcessSpec, Ready


@dataclass(frozen=True)
class Script:
    """A toy kind: a shell line after the ready marker, run by busybox (``[workload.NAME] script = "…"``)."""

    name: str
    line: str
    kind: ClassVar[str] = "script"
    ready: ClassVar[Ready] = MARKER
    image: ClassVar[None] = None
    process: ClassVar[ProcessSpec | None] = None
    params: Mapping[str, Any] = field(default_factory=dict)
    exits_by_itself: ClassVar[bool] = True
    stop_signal: ClassVar[int | None] = None
    stop_grace_s: ClassVar[float] = 0.0

    def argv(self) -> list[str]:
        return [BUSYBOX, "sh", "-c", f"echo '{READY}' >&{MARKER_FD}; {self.line}"]

    def bound(self) -> dict[str, Any]:
        return {}

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "argv": self.argv()}


def _load(name: str, table: Mapping[str, Any]) -> Script:
    line = table["script"]
    if not isinstance(line, str) or not line.strip():
        raise workload_kinds.TableError("script", "must be a shell line")
    return Script(name, line)


KIND = workload_kinds.Kind("script", frozenset({"script"}), _load)
SCENARIO = """
[scenario]
backends = ["bare"]
repetitions = 2
warmups = 0

[workload.quick]
script = "exit 0"

[[experiment]]
measurement = "startup"
workloads = ["noop", "quick"]
"""


@pytest.fixture
def script_kind():
    unregister = workload_kinds.register(KIND)
    yield
    unregister()


def test_registering_is_all_it_takes(script_kind) -> None:
    assert workload_kinds.kind("script") is KIND and "script" in workload_kinds.KINDS
    with pytest.raises(ValueError, match="already registered"):
        workload_kinds.register(KIND)
    sc = scenario.parse(tomllib.loads(SCENARIO), "s.toml")
    assert [(c.workload.name, c.workload.kind) for c in sc.cases] == [("noop", "catalog"), ("quick", "script")]


@pytest.mark.parametrize(("table", "words"), [
    ('script = ""', r"workload\.quick\.script: must be a shell line"),
    ('script = "true"\nready = "exit"', r"workload\.quick\.ready: not a key of a workload of kind script"),
    ('script = "true"\nimage = "x"', r"workload\.quick: must name its kind with exactly one of: image, script "
                                     r"\(it names image, script\)"),
    ('scrip = "true"', r"workload\.quick\.scrip: unknown key"),
])
def test_its_tables_are_checked_in_one_line(script_kind, table: str, words: str) -> None:
    text = SCENARIO.replace('script = "exit 0"', table)
    with pytest.raises(scenario.ScenarioError, match=words) as e:
        scenario.parse(tomllib.loads(text), "s.toml")
    assert "\n" not in str(e.value)


def test_unregistered_its_tables_are_refused() -> None:
    with pytest.raises(scenario.ScenarioError, match=r"workload\.quick\.script: unknown key"):
        scenario.parse(tomllib.loads(SCENARIO), "s.toml")


def test_the_runner_measures_it_like_the_catalog(script_kind, tmp_path: Path) -> None:
    sc = scenario.parse(tomllib.loads(SCENARIO), "s.toml", SCENARIO)
    run = runner.run(sc, tmp_path / "results", progress=False)
    assert json.loads((run / "manifest.json").read_text())["status"] == "completed"
    rows = [r for r in results.read_samples(run) if r["workload"] == "quick"]
    assert rows and all(r["status"] == "ok" for r in rows), [r["error"] for r in rows]
    assert {"launch_to_ready", "launch_to_exit"} <= {r["metric"] for r in rows}  # it exits by itself
