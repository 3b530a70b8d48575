"""What a killed ``isobench ab`` left: the git worktree of a commit it ran a side from.

``variants.checkout`` removes its worktree on the way out, also on an exception or Ctrl-C; a
SIGKILL leaves it (a checkout of the project and a virtual environment under the session's
directory, and its entry in the repository's worktree list).  Its name carries the ``isobench
ab`` process that made it (``isobench-ab-<pid>.<start>-<side>-<commit>``, ``runtimes.owners``):
``isobench cleanup`` removes it with ``git worktree remove`` once that process is gone, and
leaves a live session's alone.  A worktree named otherwise is not ours to judge.
"""

from __future__ import annotations

from pathlib import Path

from harness.ab.variants import PREFIX, git, repository
from harness.errors import UserError
from runtimes.owners import Owner


def worktrees() -> list[Path]:
    """The project checkout's worktrees named by ``isobench ab`` (none when it is no git checkout)."""
    try:
        listing = git("worktree", "list", "--porcelain", cwd=repository())
    except (UserError, OSError):  # an installed copy, or no git: it made no worktree
        return []
    trees = (Path(line.removeprefix("worktree ")) for line in listing.splitlines() if line.startswith("worktree "))
    return [t for t in trees if t.name.startswith(f"{PREFIX}-")]


def owner(tree: Path) -> Owner | None:
    """The ``isobench ab`` process named in a worktree's name (None: not named so)."""
    return Owner.parse(tree.name.removeprefix(f"{PREFIX}-").partition("-")[0])


def cleanup_leftovers(run_id: str | None = None) -> list[str]:
    """Remove the worktrees of ``isobench ab`` sessions whose process is gone (of session
    ``run_id`` only, if given: the session directory's name)."""
    removed = []
    for tree in worktrees():
        made_by = owner(tree)
        if made_by is None or made_by.alive() or (run_id is not None and tree.parent.name != run_id):
            continue
        try:
            if tree.exists():
                git("worktree", "remove", "--force", str(tree), cwd=repository())
            else:  # its directory went with its session's: only git's record of it is left
                git("worktree", "prune", cwd=repository())
        except (UserError, OSError) as e:
            removed.append(f"ab worktree {tree} NOT removed: {e}")
            continue
        removed.append(f"ab worktree {tree} (of isobench ab {made_by.pid}, which is gone)")
    return removed
