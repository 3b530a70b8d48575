"""What every fleet host receives: this commit of the project and the scenario, as one tar.gz.

From a git checkout the project part is ``git archive`` of what this checkout
runs: HEAD, or, when tracked files were changed, a commit of the working tree
made by ``git stash create`` (which touches no branch, index or file), so a host
runs exactly the code the controller runs; the manifest records the commit and
whether it was dirty.  Without git (an installed package) the ``harness`` and
``runtimes`` packages are taken as they are.  Only what ``python -m harness`` and
``pip install`` need goes: the packages and ``pyproject.toml``/``README.md``.

It travels inside a shell script that unpacks itself (``stage.sh``, base64 in a
here-document): Ansible's ``script`` action sends a file and runs it without
starting Python on the host, where ``copy`` starts it twice (seconds each in an
emulated guest).
"""

from __future__ import annotations

import base64
import io
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: the parts of the project a host needs (relative to ROOT)
PARTS = ("harness", "runtimes", "pyproject.toml", "README.md")
NAME = "bundle.tar.gz"
STAGE = "stage.sh"
_END = "ISOBENCH_BUNDLE_END"
_STAGE_HEAD = """#!/bin/sh
# isobench fleet: this commit of the project and the scenario (harness/fleet/bundle.py), unpacked
# into the host's working directory, $1 (its src/ and scenario.toml; what an earlier attempt left goes)
set -eu
workdir=$1
case "$workdir" in */isobench-fleet-*) ;; *) echo "isobench fleet: refusing to stage into $workdir" >&2; exit 2 ;; esac
mkdir -p -m 0700 "$workdir"
cd "$workdir"
rm -rf src results run.tar.gz run.pid scenario.toml
base64 -d > bundle.tar.gz <<'{end}'
"""
_STAGE_TAIL = """{end}
tar -xzf bundle.tar.gz
rm -f bundle.tar.gz
"""


@dataclass(frozen=True)
class Bundle:
    path: Path
    stage: Path  # the script that unpacks it on a host
    commit: str | None  # HEAD of the checkout, None outside git
    dirty: bool  # tracked files differed from HEAD (the bundle has them as they are)

    def describe(self) -> dict[str, object]:
        return {"commit": self.commit, "dirty": self.dirty}


def _git(*argv: str) -> str | None:
    try:
        r = subprocess.run(["git", "-C", str(ROOT), *argv], capture_output=True, check=False)
    except OSError:
        return None
    return r.stdout.decode().strip() if r.returncode == 0 else None


def _from_git() -> tuple[bytes, str, bool] | None:
    top = _git("rev-parse", "--show-toplevel")
    head = _git("rev-parse", "HEAD")
    if head is None or top is None or Path(top).resolve() != ROOT:  # not our checkout (a venv in one)
        return None
    stash = _git("stash", "create")  # empty when the working tree is clean
    parts = [p for p in PARTS if _git("ls-tree", "--name-only", stash or head, p)]
    r = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", "--prefix=src/", stash or head,
                        *parts], capture_output=True, check=False)
    if r.returncode != 0:
        return None
    return r.stdout, head, bool(stash)


def _from_tree() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for part in PARTS:
            if (ROOT / part).exists():
                tar.add(ROOT / part, arcname=f"src/{part}",
                        filter=lambda t: None if "__pycache__" in t.name else t)
    return buf.getvalue()


def make(dest_dir: Path, scenario: Path) -> Bundle:
    """Write ``dest_dir/bundle.tar.gz``: ``src/`` (the project) and ``scenario.toml``."""
    found = _from_git()
    project, commit, dirty = found if found else (_from_tree(), None, False)
    path = dest_dir / NAME
    with tarfile.open(path, "w:gz") as out, tarfile.open(fileobj=io.BytesIO(project), mode="r") as src:
        for member in src.getmembers():
            out.addfile(member, src.extractfile(member) if member.isfile() else None)
        out.add(scenario, arcname="scenario.toml")
    stage = dest_dir / STAGE
    with open(stage, "w") as fh:
        fh.write(_STAGE_HEAD.format(end=_END))
        fh.write(base64.encodebytes(path.read_bytes()).decode())
        fh.write(_STAGE_TAIL.format(end=_END))
    stage.chmod(0o700)
    return Bundle(path, stage, commit, dirty)
