"""Run a daemon under a child subreaper that collects its orphans at once.

libvirt daemonizes every QEMU it starts (fork, setsid, fork): the QEMU process
is an orphan, re-parented to the nearest *subreaper* ancestor, or to PID 1.
libvirt considers a guest destroyed only when its QEMU has been reaped (it
polls ``kill(pid, 0)``, which also succeeds on a zombie).  systemd reaps at
once; a container's PID 1 may not: on our CI host it takes ~1.6 s, which would
be counted in every guest's exit -> clean time.  Started under this process,
libvirtd's QEMUs are re-parented here and reaped immediately.

    python -m runtimes.vm.reaper --detach /usr/sbin/libvirtd
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys

PR_SET_CHILD_SUBREAPER = 36


def set_subreaper() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(err)}")


def reap(argv: list[str]) -> int:
    """Start ``argv``, then reap every child and orphan until the daemon itself is gone."""
    set_subreaper()
    daemon = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
    # pass termination on to the daemon, whose exit ends this loop
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda s, _f: daemon.send_signal(s))
    status = 0
    while True:
        try:
            pid, st = os.wait()
        except ChildProcessError:
            return status
        except InterruptedError:
            continue
        if pid == daemon.pid:
            daemon.returncode = os.waitstatus_to_exitcode(st)
            status = daemon.returncode
            # keep reaping orphans that are still around, then leave
            continue


def main(argv: list[str]) -> int:
    detach = bool(argv) and argv[0] == "--detach"
    if detach:
        argv = argv[1:]
    if not argv:
        print("usage: python -m runtimes.vm.reaper [--detach] COMMAND [ARG...]", file=sys.stderr)
        return 2
    if detach and os.fork() != 0:
        return 0  # the caller goes on; the reaper lives in its own session
    if detach:
        os.setsid()
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
    return reap(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
