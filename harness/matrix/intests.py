"""Run this checkout's tests of one marker (``v2host``) inside a pure cgroup v2 guest.

The host collects the node ids (fast, and it leaves pytest's rewritten
bytecode in ``__pycache__`` for the guest to reuse), the guest runs exactly
those with ``CI=true`` (a skip is a failure), writing JUnit XML to a shared
writable directory, and the host reads the verdict from it.  Nothing to run
is a failure too: a marker that selects no test checks nothing.

Why so frugal: inside a TCG guest every Python import is a 9p round trip
under emulation, so the guest imports only the selected test modules, with
plugin autoloading off, and reads /usr and site-packages through a cached
9p export.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import sysconfig
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from harness.matrix import guest, modes

ROOT = Path(__file__).resolve().parents[2]


class NothingToRun(RuntimeError):
    pass


@dataclass(frozen=True)
class Verdict:
    tests: int
    failures: int
    errors: int
    skipped: int

    @property
    def passed(self) -> bool:
        return self.tests > 0 and self.failures == self.errors == self.skipped == 0

    def words(self) -> str:
        return (f"{self.tests} test(s): {self.tests - self.failures - self.errors - self.skipped} passed, "
                f"{self.failures} failed, {self.errors} errors, {self.skipped} skipped")


def collect(marker: str, paths: tuple[str, ...] = ("tests",)) -> list[str]:
    """Node ids of the tests ``-m marker`` selects, collected on the host."""
    r = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                        "-m", marker, *paths], cwd=ROOT, capture_output=True, text=True, check=False)
    ids = [line for line in r.stdout.splitlines() if "::" in line and not line.startswith(" ")]
    if r.returncode not in (0, 5):  # 5: nothing selected
        raise RuntimeError(f"pytest --collect-only -m {marker} failed:\n{r.stdout[-2000:]}{r.stderr[-2000:]}")
    return ids


def read_junit(path: Path) -> Verdict:
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    total = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
    return Verdict(**total)


def script(node_ids: list[str], junit: Path) -> str:
    """The guest's shell script: v2 delegation, then pytest on exactly ``node_ids``."""
    pytest = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rfEs",
              "-m", "v2host", f"--junitxml={junit}", *node_ids]
    return (modes.prelude("v2") +
            f"cd {shlex.quote(str(ROOT))}\n"
            "export CI=true PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 PYTHONDONTWRITEBYTECODE=1\n"
            f"exec {shlex.join(pytest)}\n")


def cached_paths() -> tuple[str, ...]:
    """/usr and the site-packages of this Python: read-only, many files, safe to cache."""
    paths = ["/usr"]
    for key in ("purelib", "platlib"):
        p = sysconfig.get_paths()[key]
        if not p.startswith("/usr/") and p not in paths:
            paths.append(p)
    return tuple(paths)


def run_in_guest(marker: str, kernel: Path, accel: str, out_dir: Path, timeout_s: float,
                 cpus: int = 2, memory_mib: int = 1024) -> tuple[Verdict | None, guest.Outcome]:
    """Boot ``kernel`` with cgroup v2, run the ``marker`` tests; (JUnit verdict or None, outcome)."""
    ids = collect(marker)
    if not ids:
        raise NothingToRun(f"no test is marked {marker}: nothing would run in the guest")
    junit = out_dir / "junit.xml"
    g = guest.Guest(kernel, accel=accel, cpus=cpus, memory_mib=memory_mib, rw_dirs=(out_dir,),
                    cached_paths=cached_paths())
    outcome = guest.run(g, script(ids, junit), name=f"{marker}-tests", log=out_dir / "guest.log",
                        timeout_s=timeout_s, cwd=ROOT)
    return (read_junit(junit) if junit.is_file() else None), outcome
