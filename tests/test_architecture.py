"""The shape of the code base, checked: no import cycle, small modules, generic harness code.

These read the source (``ast``); nothing is imported except the backend and measurement registries.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import runtimes

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("harness", "runtimes")
MAX_LINES = 400
#: modules still over the cap while their owners split them; the test fails when one of
#: these is split (remove it here) and when any other module grows past the cap
BEING_SPLIT: set[str] = set()


def modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of harness/ and runtimes/."""
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules ``name`` imports, at module level, inside functions or under ``if
    TYPE_CHECKING:`` (an import cycle through a function-level import, or through the types one
    module needs of another, is still a cycle: the two modules cannot be understood apart)."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            # ``from pkg import module`` imports pkg.module; ``from module import name``, module
            subs = {f"{base}.{alias.name}" for alias in node.names} & known
            found.update(subs or {base})
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return {m for m in found if m in known and m != name}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = dfs(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = dfs(node)
            if found:
                return found
    return None


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycle_in_harness_and_runtimes() -> None:
    mods = modules()
    known = set(mods)
    graph = {name: imports(name, path, known) for name, path in mods.items()}
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_no_module_is_over_400_lines() -> None:
    long = {str(p.relative_to(ROOT)): n for p in modules().values()
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert set(long) - BEING_SPLIT == set(), f"modules over {MAX_LINES} lines (split them): {long}"
    assert BEING_SPLIT - set(long) == set(), "split: remove them from BEING_SPLIT"


def test_imports_counts_function_level_and_type_checking_imports(tmp_path: Path) -> None:
    path = tmp_path / "m.py"
    path.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import p.b\n"
                    "def f():\n    from p import c\n    from p.d import x\n")
    assert imports("p.a", path, {"p.a", "p.b", "p.c", "p.d", "p.e"}) == {"p.b", "p.c", "p.d"}


def _string_constants(tree: ast.AST) -> list[ast.Constant]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def test_no_backend_name_is_a_string_literal_in_harness() -> None:
    """Generic code asks the registry (``runtimes.declaration(name)``); it never names a backend."""
    names = set(runtimes.names())
    found = []
    for path in sorted((ROOT / "harness").rglob("*.py")):
        for node in _string_constants(ast.parse(path.read_text(), str(path))):
            if node.value in names or node.value.startswith("oci:"):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}")
    assert found == []


#: literals that equal a measurement's name but mean something else
NOT_A_MEASUREMENT = {
    ("harness/matrix/modes.py", "memory"): "the cgroup v1 controller",
    ("harness/measure/accounting.py", "memory"): "the cgroup v1 controller",
    ("harness/report/tables.py", "startup"): "a column of floor.csv (pinned by tests/golden)",
    ("harness/report/findings.py", "startup"): "that column of the floor table",
}


def _declares_a_measurement(tree: ast.AST) -> bool:
    return any(isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "MeasurementInfo"
               for n in ast.walk(tree))


def _inside_metric_declarations(tree: ast.AST) -> set[int]:
    """ids of the string constants that are arguments of a ``Metric(...)`` (its family)."""
    return {id(c) for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
            and n.func.id == "Metric" for c in _string_constants(n)}


def test_no_measurement_name_is_a_string_literal_in_harness() -> None:
    """Generic code asks the catalogue (``harness.measure.catalogue()``) and the report and
    validate code of one measurement gets its name from the declaration that names it; only the
    module declaring a measurement (and a ``Metric``'s family) spells its name."""
    from harness.measure import catalogue

    names = set(catalogue().measurements)
    found = []
    for path in sorted((ROOT / "harness").rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        if _declares_a_measurement(tree):
            continue
        rel, declared = str(path.relative_to(ROOT)), _inside_metric_declarations(tree)
        for node in _string_constants(tree):
            if node.value in names and id(node) not in declared and (rel, node.value) not in NOT_A_MEASUREMENT:
                found.append(f"{rel}:{node.lineno}: {node.value!r}")
    assert found == []


def test_declarations_are_readable_without_the_backends_dependencies() -> None:
    """doctor --fix reads them under the system Python: no psutil, libvirt, pyroute2 or pandas."""
    blocked = ["psutil", "libvirt", "pyroute2", "pandas", "numpy", "scipy", "pyseccomp", "seccomp"]
    code = (f"import sys\nfor m in {blocked!r}: sys.modules[m] = None\n"
            "import runtimes\n"
            "for d in runtimes.declarations(): print(d.name, d.colour)\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert [line.split()[0] for line in proc.stdout.splitlines()] == runtimes.names()


@pytest.mark.parametrize("name", runtimes.names())
def test_every_declaration_is_complete(name: str) -> None:
    d = runtimes.declaration(name)
    assert d.name == name and d.label and d.colour.startswith("#") and len(d.colour) == 7
    assert d.peer_of is None or runtimes.known(d.peer_of)
    assert isinstance(d.factory, str) and ":" in d.factory
    for ref in (d.sweep, d.doctor, d.host_setup):
        assert ref is None or ":" in ref
    assert len({runtimes.declaration(n).colour for n in runtimes.names()}) == len(runtimes.names())


def test_exactly_one_reference_and_floor_target() -> None:
    assert runtimes.known(runtimes.reference()) and runtimes.known(runtimes.floor_target())


def _imports_argparse(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import) and any(a.name == "argparse" for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and node.module == "argparse":
            return True
    return False


def test_only_the_command_line_imports_argparse() -> None:
    """Commands parse and print (``harness/commands/``); library modules take plain arguments."""
    allowed = {"harness.cli"} | {m for m in modules() if m.startswith("harness.commands.")}
    found = sorted(m for m, p in modules().items() if m.startswith("harness") and m not in allowed
                   and _imports_argparse(p))
    assert found == []


def test_every_command_is_a_module_with_help_arguments_and_main() -> None:
    from harness import cli

    files = {p.stem for p in (ROOT / "harness" / "commands").glob("*.py") if p.stem != "__init__"}
    assert {m.rpartition(".")[2] for m in cli.COMMANDS.values()} == files, "a command module is not registered"
    for name, module in cli.COMMANDS.items():
        tree = ast.parse((ROOT / (module.replace(".", "/") + ".py")).read_text())
        top = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
        top |= {t.id for n in tree.body if isinstance(n, (ast.Assign, ast.AnnAssign))
                for t in (n.targets if isinstance(n, ast.Assign) else [n.target]) if isinstance(t, ast.Name)}
        assert {"HELP", "add_arguments", "main"} <= top, f"{name}: {module} lacks HELP, add_arguments or main"
