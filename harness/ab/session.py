"""One interleaved A/B session: K runs a side in the order A B B A A B B A ..., each run a plain
``isobench run`` of the side's scenario (from its own checkout for a commit), stored under one
session directory with a record of what ran (``ab.json``).

Why interleaved and paired: a host drifts (the neighbours' load, the page cache, thermal
state); runs made side by side share that state, so the difference within a pair cancels it,
and the A B B A order balances a steady drift within each block of four (Firecracker runs its
A/B tests this way).  The pairs' differences are then the unit of the test
(``harness.compare``, ``paired``).
"""

from __future__ import annotations

import contextlib
import json
import secrets
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.ab.variants import Variant, checkout, interpreter, scenario_text
from harness.errors import UserError

SCHEMA = "isobench/ab-1"
RECORD = "ab.json"
#: seconds one run may take before the session gives up on it
RUN_TIMEOUT_S = 3600


def order(k: int) -> list[tuple[int, str]]:
    """(pair, side) in the order they run: pair 0 is A then B, pair 1 B then A, and so on."""
    return [(j, side) for j in range(k) for side in (("A", "B") if j % 2 == 0 else ("B", "A"))]


@dataclass
class Session:
    scenario: Path
    a: Variant
    b: Variant
    runs: int
    results: Path
    backends: str | None = None
    session_id: str = field(default_factory=lambda: time.strftime("ab-%Y%m%d-%H%M%S-") + secrets.token_hex(2))
    run_dirs: dict[str, list[Path]] = field(default_factory=lambda: {"A": [], "B": []})

    @property
    def dir(self) -> Path:
        return self.results / self.session_id

    def variant(self, side: str) -> Variant:
        return self.a if side == "A" else self.b

    def record(self, **extra: Any) -> dict[str, Any]:
        from harness import metadata

        return {"schema": SCHEMA, "session": self.session_id, "scenario": str(self.scenario),
                "variants": {s: self.variant(s).text() for s in "AB"}, "runs_per_side": self.runs,
                "order": [f"{s}{j + 1}" for j, s in order(self.runs)], "backends": self.backends,
                "run_dirs": {s: [p.name for p in ds] for s, ds in self.run_dirs.items()},
                "host": {k: v for k, v in metadata.collect().items()
                         if k in ("hostname", "kernel", "cpu_model", "commit", "dirty", "loadavg")}, **extra}

    def write_record(self, **extra: Any) -> Path:
        path = self.dir / RECORD
        path.write_text(json.dumps(self.record(**extra), indent=1, sort_keys=True, default=str) + "\n")
        return path


def _command(python: Path, toml: Path, session: Session, run_id: str) -> list[str]:
    argv = [str(python), "-m", "harness", "run", str(toml), "--results", str(session.dir.resolve()),
            "--run-id", run_id, "--no-progress"]
    return argv + (["--backends", session.backends] if session.backends else [])


def run(session: Session, say: Callable[[str], None] = lambda _s: None) -> Session:
    """Make the session's runs (``UserError`` naming the log of a run that failed); what ran is kept."""
    text = session.scenario.read_text()
    session.dir.mkdir(parents=True, exist_ok=False)
    with contextlib.ExitStack() as stack:
        where: dict[str, tuple[Path, Path]] = {}
        tomls: dict[str, Path] = {}
        for side in "AB":
            v = session.variant(side)
            toml = session.dir / f"{side}.toml"
            try:
                toml.write_text(scenario_text(text, v))
            except Exception as e:  # a TOML the overrides made unwritable: one line, not a traceback
                raise UserError(f"--{side.lower()}: cannot apply {v.text()} to {session.scenario}: {e}") from None
            tomls[side] = toml
            where[side] = stack.enter_context(checkout(v.commit, session.dir, side)) if v.commit else \
                (interpreter(), Path.cwd())
        for j, side in order(session.runs):
            run_id = f"{session.session_id}-{side}{j + 1}"
            python, cwd = where[side]
            log = session.dir / f"{run_id}.log"
            say(f"isobench ab: run {len(session.run_dirs['A']) + len(session.run_dirs['B']) + 1}/{2 * session.runs}: "
                f"{side}{j + 1} ({session.variant(side).text()})")
            with log.open("w") as fh:
                proc = subprocess.run(_command(python, tomls[side], session, run_id), cwd=cwd, stdout=fh,
                                      stderr=subprocess.STDOUT, timeout=RUN_TIMEOUT_S)
            if proc.returncode != 0:
                session.write_record(failed=run_id)
                raise UserError(f"run {run_id} failed (exit {proc.returncode}); see {log}")
            session.run_dirs[side].append(session.dir / run_id)
    session.write_record()
    return session


def existing(session_dir: Path) -> Session:
    """A session already run (``isobench ab --reuse DIR``): its record, to compare again."""
    try:
        data = json.loads((session_dir / RECORD).read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"{session_dir}: not an isobench ab session ({e})") from None
    if data.get("schema") != SCHEMA:
        raise UserError(f"{session_dir}: not an isobench ab session (schema {SCHEMA})")
    s = Session(Path(data["scenario"]), Variant("A"), Variant("B"), int(data["runs_per_side"]), session_dir.parent,
                data.get("backends"), session_dir.name)
    s.run_dirs = {side: [session_dir / name for name in data["run_dirs"][side]] for side in "AB"}
    if len(s.run_dirs["A"]) != len(s.run_dirs["B"]) or not s.run_dirs["A"]:
        raise UserError(f"{session_dir}: the session did not complete its pairs")
    return s
