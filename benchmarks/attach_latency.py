"""How long placing a process into a cgroup takes, cold and hot: the cost ``favordynmods`` removes.

Run as root on a cgroup v2 host (``python -m benchmarks.attach_latency --out F``), usually inside
a guest of ``tools/favordynmods_ab.py``.  Stdlib only.  Per repetition, after a pause of
``--gap`` seconds (long enough for RCU to go idle, which is what makes an attach "cold"):

- ``migrate_cold``: write a sleeping child's pid to ``cgroup.procs`` of cgroup ``a`` -- what
  runc, crun, libvirt and our ``fork`` launcher do.  The write takes the global threadgroup lock
  for writing, whose percpu_rwsem waits for an RCU grace period unless the hierarchy is mounted
  with ``favordynmods`` (or the kernel booted with ``cgroup_favordynmods=1``);
- ``migrate_hot``: right after, move it on to cgroup ``b`` (the grace period just passed);
- ``clone_into``: after another pause, ``clone3(CLONE_INTO_CGROUP)`` a child straight into ``a``
  -- the zygote's path: no migration, no wait for the lock, favordynmods or not.

Everything it makes (``isobench-attach-<pid>`` below this process's own cgroup, its children)
is removed on the way out, also on an error.  Writes one JSON object: the samples in ns and the
favordynmods state read back from the kernel (``runtimes.cgroups.parse.favordynmods``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import time
from collections.abc import Iterator
from pathlib import Path

from runtimes import syscalls as sc
from runtimes.cgroups.parse import favordynmods

ROOT = Path("/sys/fs/cgroup")


def own_cgroup() -> Path:
    """This process's v2 cgroup directory (``0::/path``)."""
    if not (ROOT / "cgroup.controllers").is_file():
        raise SystemExit("attach_latency: /sys/fs/cgroup is not a cgroup v2 tree (run it on a v2 host or guest)")
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        if line.startswith("0::"):
            return ROOT / line[3:].lstrip("/")
    raise SystemExit("attach_latency: not on a cgroup v2 host (no 0:: line in /proc/self/cgroup)")


@contextlib.contextmanager
def scratch() -> Iterator[tuple[Path, Path]]:
    """Two sibling cgroups below ours; removed (after their processes went) however we leave."""
    top = own_cgroup() / f"isobench-attach-{os.getpid()}"
    a, b = top / "a", top / "b"
    top.mkdir()
    try:
        a.mkdir()
        b.mkdir()
        yield a, b
    finally:
        for d in (a, b, top):
            with contextlib.suppress(FileNotFoundError):
                d.rmdir()


def _now() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


def _sleeper() -> int:
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child only waits to be moved and killed
        signal.pause()
        os._exit(0)
    return pid


def _write(path: Path, text: str) -> int:
    """ns spent in the write(2) alone."""
    fd = os.open(path, os.O_WRONLY)
    try:
        t0 = _now()
        os.write(fd, text.encode())
        return _now() - t0
    finally:
        os.close(fd)


def measure(reps: int, gap: float) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {"migrate_cold": [], "migrate_hot": [], "clone_into": []}
    with scratch() as (a, b):
        for _ in range(reps):
            pid = _sleeper()
            try:
                time.sleep(gap)
                out["migrate_cold"].append(_write(a / "cgroup.procs", str(pid)))
                out["migrate_hot"].append(_write(b / "cgroup.procs", str(pid)))
            finally:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            time.sleep(gap)
            fd = os.open(a, os.O_RDONLY | os.O_DIRECTORY)
            try:
                t0 = _now()
                child = sc.clone3(0, fd, exit_signal=signal.SIGCHLD)
                if child == 0:  # pragma: no cover
                    os._exit(0)
                out["clone_into"].append(_now() - t0)
                os.waitpid(child, 0)
            finally:
                os.close(fd)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=40)
    p.add_argument("--gap", type=float, default=0.2, help="seconds of quiet before a cold attach")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    if args.reps < 1 or args.gap < 0:
        p.error("--reps must be >= 1 and --gap >= 0")
    state = favordynmods(Path("/proc/self/mountinfo").read_text(), Path("/proc/cmdline").read_text())
    samples = measure(args.reps, args.gap)
    args.out.write_text(json.dumps({"kernel": platform.release(), "favordynmods": state,
                                    "gap_s": args.gap, "samples_ns": samples}) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
