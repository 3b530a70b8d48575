"""gVisor's ``runsc`` as an OCI runtime: an application kernel between a container and a VM.

runsc runs the same bundle as runc and crun (``runtimes.oci.bundle``) with what
differs here (found on runsc release-20221219, Debian's build):

- **Platform**: how the Sentry (gVisor's kernel, a host process) intercepts the
  workload's system calls: ``ptrace`` (every syscall a ptrace stop of a stub
  process) or ``kvm`` (the Sentry as a guest kernel; needs a working
  /dev/kvm).  This build has no ``systrap``.  ``auto`` starts a noop sandbox on
  KVM once per host, kernel and runsc version (cached like the guests'
  accelerator verdict) and uses KVM only if it reached its ready marker.
  The platform is recorded as the rows' ``accel`` and every figure says it.
- **seccomp**: runsc always confines the Sentry and the Gofer with its own
  host filters; the bundle's ``linux.seccomp`` it *ignores* unless started
  with ``--oci-seccomp`` (checked: without it a workload reads ``Seccomp: 0``
  in /proc/self/status and may ``unshare`` what Docker's profile denies).  So
  runsc is started with ``--oci-seccomp`` whenever the bundle has a profile:
  the Sentry then applies the same profile to the workload's syscalls itself.
- **Network**: ``--network=none``: the sandbox's own network stack with only
  a loopback, as the container's fresh network namespace.
- **Marker**: runsc hands a container only its stdio (no ``--preserve-fds``),
  so runsc's stdout is the marker pipe and the workload starts with
  ``exec 3>&1 1>&2``: fd 3 is the marker pipe, stdout joins stderr (the log).
  For catalog workloads this is a prefix of their ``sh -c`` script, not an
  extra process.
- **Limits**: runsc puts the Gofer, the Sentry and (ptrace) its stub processes
  into the bundle's cgroup: the host cgroup bounds the whole sandbox, not the
  workload's own processes (which are no host processes).  A pids limit
  counts the Sentry's and Gofer's threads: below a few dozen the sandbox
  cannot start at all.
- **t_exit**: the workload is no host process, so its exit has no host exit
  event; the kernel's exit event of the Sentry (the sandbox process, whose pid
  ``run --pid-file`` writes) stands for it: a one-container sandbox's Sentry
  exits once the container's init has.  The Gofer's end, runsc's cgroup
  removal and state deletion follow, in exit -> clean.
- **State**: ``<root>/<sandbox>_sandbox:<container>.state`` (and ``.lock``).
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from runtimes.oci.cli import Cli
from runtimes.vm import accel as verdicts
from runtimes.workloads import BUSYBOX, MARKER_FD

#: platforms a scenario may ask for (``auto``: KVM where a probe sandbox starts on it, else ptrace)
PLATFORMS = ("auto", "ptrace", "kvm")
#: the platform when none was decided (a delete, a sweep: runsc ignores it there)
DEFAULT_PLATFORM = "ptrace"
#: a noop sandbox on KVM is ready in well under a second where KVM works; where /dev/kvm is
#: there but its guests hang (a nested paravirtual KVM), the probe costs this once per host
PROBE_TIMEOUT_S = 5.0
#: the pid file ``run`` writes into the bundle: the Sentry's host pid
PID_FILE = "sandbox.pid"
#: inside the sandbox: fd 3 becomes the marker pipe runsc got as stdout, stdout joins stderr
REDIRECT = f"exec {MARKER_FD}>&1 1>&2"

class Runsc(Cli):
    marker_fd = 1
    exit_words = "the Sentry (the sandbox process, its pid from run --pid-file)"
    launch_words = "run --pid-file (foreground); marker on stdout, workload prefixed with " + repr(REDIRECT)

    def __init__(self, exe: str, state_root: Path, platform: str = DEFAULT_PLATFORM, oci_seccomp: bool = True):
        super().__init__("runsc", exe, state_root)
        self.platform = platform
        self.oci_seccomp = oci_seccomp

    def command(self, *args: str) -> list[str]:
        flags = [f"--platform={self.platform}", "--network=none"] + (["--oci-seccomp"] if self.oci_seccomp else [])
        return [*super().command(), *flags, *args]

    def run(self, bundle_dir: Path, name: str, marker: bool = True) -> list[str]:
        return self.command("run", "--pid-file", str(bundle_dir / PID_FILE), "--bundle", str(bundle_dir), name)

    def argv(self, argv: list[str]) -> list[str]:
        if argv[:3] == [BUSYBOX, "sh", "-c"] and len(argv) >= 4:  # a catalog workload: no extra exec
            return [*argv[:3], f"{REDIRECT}; {argv[3]}", *argv[4:]]
        return [BUSYBOX, "sh", "-c", f'{REDIRECT}; exec "$@"', "sh", *argv]

    def names(self) -> set[str]:
        return {n for n in (container_of(p.name) for p in self._files()) if n}

    def state(self, name: str) -> list[Path]:
        return [p for p in self._files() if container_of(p.name) == name]

    def _files(self) -> list[Path]:
        try:
            return list(self.state_root.iterdir())
        except FileNotFoundError:
            return []

    def sandbox_pid(self, bundle_dir: Path) -> int | None:
        try:
            return int((bundle_dir / PID_FILE).read_text().strip())
        except (OSError, ValueError):
            return None

    def metadata(self) -> dict[str, Any]:
        return {**super().metadata(), "platform": self.platform, "network": "none (the sandbox's loopback only)",
                "seccomp": ("the bundle's profile, applied by the Sentry (--oci-seccomp); the Sentry and "
                            "Gofer run under runsc's own host filters" if self.oci_seccomp else
                            "none for the workload; the Sentry and Gofer under runsc's own host filters")}


def container_of(filename: str) -> str | None:
    """``<sandbox>_sandbox:<container>.state`` (or ``.lock``) -> the container's name."""
    _, sep, rest = filename.partition("_sandbox:")
    if not sep:
        return None
    return rest.rsplit(".", 1)[0] if rest.endswith((".state", ".lock")) else None


# -- the platform ----------------------------------------------------------------------


def platform(requested: str, version: str, probe: Callable[[float], str | None],
             cache: Path, kvm_device: str = verdicts.KVM_DEVICE) -> verdicts.Verdict:
    """The platform to run on: as asked, or for ``auto`` KVM where a probe sandbox started on it
    (``probe(timeout)`` returns None, else why not), cached per host, kernel and runsc version."""
    if requested not in PLATFORMS:
        raise ValueError(f"unknown runsc platform {requested!r} (known: {', '.join(PLATFORMS)})")
    if requested != "auto":
        return verdicts.Verdict(requested, f"{requested} asked for (no probe)")
    problem = verdicts.kvm_device_problem(kvm_device)
    if problem is not None:
        return verdicts.Verdict("ptrace", f"KVM unavailable ({problem}): the ptrace platform")
    key = {"host": socket.gethostname(), "host_kernel": os.uname().release, "runsc": version,
           "kvm_device": kvm_device}
    cached = verdicts.load_cached(cache, key)
    if cached is not None:
        return cached
    why = probe(PROBE_TIMEOUT_S)
    verdict = (verdicts.Verdict("kvm", "a probe sandbox on the KVM platform reached its ready marker")
               if why is None else
               verdicts.Verdict("ptrace", f"/dev/kvm is present but a probe sandbox on the KVM platform did not "
                                          f"start ({why}): the ptrace platform"))
    with contextlib.suppress(OSError):  # not cached: the next backend probes again
        cache.mkdir(parents=True, exist_ok=True)
        verdicts.store(cache, key, verdict)
    return verdict
