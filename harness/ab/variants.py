"""What A and B are: option overrides of one scenario, or two commits of the project.

``--a KEY=VALUE`` (repeatable) sets a key of the scenario file for that side: a dotted path into
the TOML (``backend.container.seccomp=unconfined``, ``scenario.repetitions=10``,
``experiment.0.workloads=["noop"]``), the value read as TOML (a bare word is a string).
``--a commit=REV`` runs that side from another commit of the project instead: a git worktree
of it with a virtual environment of its own (the project's code from the worktree, its
dependencies from this interpreter's site-packages: no network needed), removed afterwards.
"""

from __future__ import annotations

import contextlib
import copy
import site
import subprocess
import sys
import tomllib
import venv
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import UserError
from runtimes import owners

#: every worktree and virtual environment ``isobench ab`` makes carries this in its name; a
#: worktree's name then carries its owner (``runtimes.owners``: ``<pid>.<start>``), so that
#: ``isobench cleanup`` removes the worktree of an ``isobench ab`` that was killed
#: (``harness.ab.leftovers``)
PREFIX = "isobench-ab"


@dataclass(frozen=True)
class Variant:
    label: str  # "A" or "B"
    overrides: tuple[tuple[str, Any], ...] = ()
    commit: str | None = None

    def text(self) -> str:
        parts = [f"commit {self.commit}"] if self.commit else []
        parts += [f"{k}={v!r}" for k, v in self.overrides]
        return ", ".join(parts) or "the scenario as it is"


def _value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text  # a bare word: a string


def parse(label: str, specs: Sequence[str]) -> Variant:
    """A side from its ``KEY=VALUE`` specs (``UserError`` naming the bad one)."""
    overrides: list[tuple[str, Any]] = []
    commit = None
    for spec in specs:
        key, sep, value = spec.partition("=")
        key = key.strip()
        if not sep or not key or not value.strip():
            raise UserError(f"--{label.lower()} {spec!r}: expected KEY=VALUE (e.g. backend.container.seccomp=unconfined "
                            "or commit=HEAD~1)")
        if key == "commit":
            commit = value.strip()
        else:
            overrides.append((key, _value(value.strip())))
    return Variant(label, tuple(overrides), commit)


def _set(data: dict[str, Any], path: str, value: Any) -> None:
    node: Any = data
    parts = path.split(".")
    for i, part in enumerate(parts[:-1]):
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise UserError(f"{path}: {'.'.join(parts[:i])} has no entry {part}")
            node = node[int(part)]
        else:
            node = node.setdefault(part, {})
        if not isinstance(node, (dict, list)):
            raise UserError(f"{path}: {'.'.join(parts[:i + 1])} is not a table")
    if isinstance(node, list):
        raise UserError(f"{path}: name a key of an entry, not the entry")
    node[parts[-1]] = value


def scenario_data(text: str, variant: Variant) -> dict[str, Any]:
    """The scenario's TOML with the variant's overrides set."""
    data = copy.deepcopy(tomllib.loads(text))
    for key, value in variant.overrides:
        _set(data, key, value)
    return data


def scenario_text(text: str, variant: Variant) -> str:
    import tomli_w

    return tomli_w.dumps(scenario_data(text, variant))


def repository() -> Path:
    """The project's checkout (``harness`` is imported from it)."""
    return Path(__file__).resolve().parents[2]


def git(*argv: str, cwd: Path) -> str:
    proc = subprocess.run(["git", *argv], cwd=cwd, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise UserError(f"git {' '.join(argv)}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout.strip()


@contextlib.contextmanager
def checkout(commit: str, where: Path, label: str = "") -> Iterator[tuple[Path, Path]]:
    """(python, working directory) of ``commit``: a detached worktree under ``where`` and a venv in it
    whose site-packages point at the worktree and at this interpreter's dependencies.  Removed on
    the way out, also on failure; after a SIGKILL by ``isobench cleanup`` (its name carries this
    process)."""
    repo = repository()
    sha = git("rev-parse", "--verify", f"{commit}^{{commit}}", cwd=repo)
    tree = where / f"{PREFIX}-{owners.me().tag()}-{label or 'x'}-{sha[:12]}"
    git("worktree", "add", "--detach", str(tree), sha, cwd=repo)
    try:
        env = tree / ".venv"
        venv.EnvBuilder(with_pip=False, symlinks=True).create(env)
        py = env / "bin" / "python"
        purelib = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                 capture_output=True, text=True, check=True, timeout=60).stdout.strip()
        deps = [p for p in (*site.getsitepackages(), site.getusersitepackages()) if Path(p).is_dir()]
        (Path(purelib) / f"{PREFIX}.pth").write_text("\n".join([str(tree), *deps]) + "\n")
        yield py, tree
    finally:
        with contextlib.suppress(UserError):
            git("worktree", "remove", "--force", str(tree), cwd=repo)


def interpreter() -> Path:
    return Path(sys.executable)
