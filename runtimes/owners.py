"""Who owns what isobench makes on a host, so that ``isobench cleanup`` touches only what a dead
harness left behind.

Everything an instance creates is named ``isobench-<run id>-…`` (``runtimes.naming``).  A
process that launches for a run id first *claims* it: an empty file
``<OWNERS>/<run id>/<pid>.<start>``, ``start`` being the process's start time (clock ticks
since boot, field 22 of ``/proc/<pid>/stat``), so that a pid the kernel has since given to
another process is not taken for the owner.  A normal exit removes the record; after a
SIGKILL it stays, naming a process that is gone, and ``live()`` treats the run as dead.

``live()`` reads the records once: an object whose name belongs to a run with a live owner
is not a leftover, whoever asks.  Objects named after their owning process instead of a run
(the v1 devices cgroup a backend's containers share) carry ``Owner.tag()`` in their name.
The records live on /run (a tmpfs): a reboot, which ends every run, empties it.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from runtimes.naming import PREFIX, check_run_id, of_run

#: where the records are (one directory per run id); ISOBENCH_OWNERS moves it (tests)
OWNERS = Path(os.environ.get("ISOBENCH_OWNERS", f"/run/{PREFIX}/owners"))


def proc_start(pid: int) -> str:
    """The start time of process ``pid`` (clock ticks since boot); "" when there is none."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            # the comm (field 2) may hold spaces and parentheses: count from the last ")"
            return f.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return ""


@dataclass(frozen=True)
class Owner:
    """A process, by pid *and* start time."""

    pid: int
    start: str

    def alive(self) -> bool:
        return bool(self.start) and proc_start(self.pid) == self.start

    def tag(self) -> str:
        """How names carry it: ``<pid>.<start>``."""
        return f"{self.pid}.{self.start}"

    @classmethod
    def parse(cls, tag: str) -> Owner | None:
        pid, dot, start = tag.partition(".")
        return cls(int(pid), start) if dot and pid.isdigit() and start.isdigit() else None


def me() -> Owner:
    """This process (asked anew after a fork)."""
    pid = os.getpid()
    return Owner(pid, proc_start(pid))


_lock = threading.Lock()
#: (pid, run id) this process has claimed, and the record files to remove at exit
_claimed: dict[tuple[int, str], Path] = {}


def claim(run_id: str) -> None:
    """Record this process as an owner of ``run_id`` (once per process and run id; a set lookup
    after the first call, so backends call it on every launch, before ``t_launch``)."""
    key = (os.getpid(), run_id)
    if key in _claimed:
        return
    check_run_id(run_id)
    with _lock:
        if key in _claimed:
            return
        record = OWNERS / run_id / me().tag()
        try:
            record.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            record.touch()
        except PermissionError:  # not root: it can make nothing `isobench cleanup` (root) sweeps
            return
        except OSError as e:
            raise OSError(e.errno, f"cannot record the owner of run {run_id} in {record.parent}: "
                                   f"{e.strerror}") from e
        if not _claimed:
            atexit.register(_release_all)
        _claimed[key] = record


def release(run_id: str) -> None:
    """This process no longer owns ``run_id``: what is left of it is a leftover from now on."""
    record = _claimed.pop((os.getpid(), run_id), None)
    if record is not None:
        with contextlib.suppress(OSError):
            record.unlink()
            record.parent.rmdir()  # fails while another owner's record is there: fine


def _release_all() -> None:
    pid = os.getpid()
    for (owner, _), record in list(_claimed.items()):
        if owner == pid:  # a forked child's exit must not drop its parent's claims
            with contextlib.suppress(OSError):
                record.unlink()
                record.parent.rmdir()  # fails while another owner's record is there: fine


@dataclass(frozen=True)
class Live:
    """The runs whose owner lives, read once (``live()``)."""

    runs: dict[str, tuple[Owner, ...]] = field(default_factory=dict)

    def owner_of(self, name: str) -> Owner | None:
        """The live owner of the object called ``name`` (``isobench-<run id>`` or
        ``isobench-<run id>-…``), or of the process tag in a name; None when it has none."""
        for run_id, owners in self.runs.items():
            if of_run(name, run_id):
                return owners[0]
        return None

    def holders(self, name: str) -> tuple[Owner, ...]:
        """The live processes that hold the object called ``name``: its run's live owners, or the
        live processes whose tag it carries (``isobench-devices-<pid>.<start>-…``); () when none."""
        for run_id, owners in self.runs.items():
            if of_run(name, run_id):
                return owners
        tagged = (Owner.parse(part) for part in name.split("-")[1:] if "." in part)
        return tuple(o for o in tagged if o is not None and o.alive())

    def owns(self, name: str) -> bool:
        """``name`` is a live run's object, or carries the tag of a live process."""
        return bool(self.holders(name))

    def owns_path(self, parts: tuple[str, ...]) -> bool:
        """Whether any component of a path (a cgroup below ours, a mount point) is a live run's."""
        return any(self.owns(p) for p in parts)


def live(*, prune: bool = False) -> Live:
    """The runs with a live owner; with ``prune``, the records of dead owners are removed."""
    runs: dict[str, tuple[Owner, ...]] = {}
    try:
        run_dirs = list(OWNERS.iterdir())
    except FileNotFoundError:
        return Live()
    for d in run_dirs:
        alive = []
        with contextlib.suppress(OSError):  # removed meanwhile by its owner
            for record in d.iterdir():
                owner = Owner.parse(record.name)
                if owner is not None and owner.alive():
                    alive.append(owner)
                elif prune:
                    record.unlink(missing_ok=True)
        if alive:
            runs[d.name] = tuple(alive)
        elif prune:
            with contextlib.suppress(OSError):
                d.rmdir()
    return Live(runs)
