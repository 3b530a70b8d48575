"""The contract every backend implements (see ``runtimes.REGISTRY`` for the backends).

A backend is a small object with a ``name``, an ``available()`` that explains
itself when it cannot run here, and ``launch(spec)`` that returns an
:class:`Instance`.  The runner and the measurements only ever talk to these
two types, so a measurement is defined once and applies to every backend.

Timing contract (host ``CLOCK_MONOTONIC``, nanoseconds, see ``now_ns``):

``t_launch``  taken just before the backend starts creating the instance: what does not
              depend on the instance (log files, parent directories, images, helpers) is
              done before it, by every backend (``runtimes.process.instance_log``);
``t_ready``   when the host *receives* the workload's ready marker;
``t_exit``    when the host knows the workload has exited: the harness reaped it, the
              kernel reported the exit of a process the harness does not reap (an OCI
              runtime's container), or the guest's EXIT line arrived -- never before
              ``t_ready``; what follows (cgroup removal, a runtime's delete, a guest's
              power-off) is teardown, counted in exit -> clean;
``t_clean``   when every resource of the instance is gone.

docs/metrics.md, "The timing contract", says this per backend.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

# PREFIX and Limits live in leaf modules (runtimes.cgroups uses them without importing this
# contract, which would be an import cycle); re-exported here, where backends find them
from runtimes.limits import Limits as Limits
from runtimes.naming import PREFIX as PREFIX
from runtimes.naming import check_object_name, check_run_id

if TYPE_CHECKING:  # pragma: no cover
    from runtimes.cgroups import Cgroup
    from runtimes.workloads import AnyWorkload


def now_ns() -> int:
    """The one clock every timestamp of the harness is read from."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


class BackendError(RuntimeError):
    """An instance could not be launched or run; the message is for the user."""


class InstanceTimeout(BackendError):
    """The instance missed a deadline (ready or exit)."""


@dataclass(frozen=True)
class LaunchSpec:
    """What to run and under which limits: the same for every backend."""

    workload: AnyWorkload  # a catalog entry, or one a [workload.NAME] table defines (an image's process)
    run_id: str
    instance: str  # unique name, ``isobench-<run_id>-<n>``; used for cgroups, domains, hostnames
    limits: Limits = Limits()
    timeout_s: float = 60.0
    vcpus: int = 1  # VMs only
    guest_memory_mib: int = 256  # VMs only: the guest's RAM (its memory limit)
    log_dir: str | None = None  # where a backend keeps console logs etc.
    extra: Mapping[str, Any] = field(default_factory=dict)  # backend-specific knobs

    def __post_init__(self) -> None:
        # both become parts of paths and cgroup names: plain names only (``BadName`` otherwise)
        check_run_id(self.run_id)
        check_object_name(self.instance)


@dataclass
class Timestamps:
    t_launch: int | None = None
    t_ready: int | None = None
    t_exit: int | None = None
    t_clean: int | None = None
    #: optional phase breakdown: phase name -> duration in ns, in launch order
    phases: dict[str, int] = field(default_factory=dict)

    def since_launch(self) -> int:
        """Nanoseconds from ``t_launch`` to now: a phase that starts with the launch."""
        if self.t_launch is None:
            raise ValueError("t_launch is not recorded yet")
        return now_ns() - self.t_launch


class Instance(abc.ABC):
    """One running workload in one environment.

    ``cleanup()`` must be idempotent and safe to call from any state (also
    before ``wait_ready`` succeeded, and from a signal-driven unwind); it sets
    ``times.t_clean``.  Instances are context managers that clean up on exit.
    """

    name: str
    times: Timestamps
    #: the instance's cgroup when the backend made one (None otherwise)
    cgroup: Cgroup | None = None
    #: where the console / stderr log of this instance is kept, if any
    log_path: str | None = None
    #: ``ISOBENCH RESULT k=v`` lines the workload reported, parsed
    results: dict[str, str]
    #: the accelerator this instance ran on ("kvm", "tcg"), VMs only
    accel: str | None = None

    @abc.abstractmethod
    def wait_ready(self, timeout: float) -> int:
        """Block until the ready marker arrived; return ``t_ready``. Raise InstanceTimeout."""

    @abc.abstractmethod
    def wait(self, timeout: float) -> int:
        """Block until the workload exited; return its exit status. Raise InstanceTimeout.

        On a timeout a backend may stop the instance (a VM is destroyed), so poll by
        calling ``wait`` once with the whole allowance (e.g. in a thread), not in a loop."""

    @abc.abstractmethod
    def processes(self) -> list[int]:
        """Host PIDs that belong to this instance (workload, helpers, QEMU)."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Ask the workload to end now (SIGKILL / destroy); does not clean up."""

    _cleaned: bool = False

    def cleanup(self) -> None:
        """Remove every resource of the instance; idempotent; sets ``times.t_clean``, also
        when the teardown failed (the instance is then as clean as it can get)."""
        if self._cleaned:
            return
        try:
            self._teardown()
        finally:
            self._cleaned = True
            self.times.t_clean = now_ns()

    @abc.abstractmethod
    def _teardown(self) -> None:
        """Stop the workload and remove what it holds on the host; called once, by ``cleanup``."""

    def usage(self) -> dict[str, float]:
        """Counters of the enforcement mechanism (cgroup or guest), read now."""
        return self.cgroup.usage() if self.cgroup is not None else {}

    def guest_report(self) -> dict[str, str]:
        """What the environment itself says (VM guests), e.g. guest-visible memory."""
        return {}

    def __enter__(self) -> Instance:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


class Backend(abc.ABC):
    """A backend's code; what it *is* (options, capabilities, colour) is its
    :class:`~runtimes.declaration.Declaration`, found by ``runtimes.declaration(name)``."""

    #: the name users type (``--backends``) and rows carry
    name: str

    @abc.abstractmethod
    def available(self) -> str | None:
        """None when the backend can run here, else one line saying why not (and the fix)."""

    @abc.abstractmethod
    def launch(self, spec: LaunchSpec) -> Instance:
        """Start the workload; returns as soon as it is launched (not ready)."""

    def prepare(self) -> None:  # noqa: B027 - optional hook, most backends have nothing to prepare
        """The explicit host step before any sample (the runner and doctor call it): what is
        slow or has side effects (an accelerator probe boot, guest images) happens here."""

    def metadata(self) -> dict[str, Any]:
        """Facts recorded in the manifest for this backend (versions, accelerator...); only
        reports, never probes: what ``prepare()`` found."""
        return {}

    def helpers(self) -> dict[str, int]:
        """The long-lived processes the backend keeps between launches (name -> pid; none by
        default): what a soak samples beside the harness (``harness.soak``)."""
        return {}

    def close(self) -> None:  # noqa: B027 - optional hook, most backends hold nothing
        """Release backend-wide resources (connections) at the end of a run; idempotent."""

    def image_files(self, spec: LaunchSpec) -> tuple[Path, ...] | None:
        """The host files an instance of ``spec`` reads its image's bytes from, when they are not
        the image's layer directories (None): a guest's layer disks.  The page-cache measurement
        asks the kernel which of their pages are cached (nothing is built or read in here)."""
        return None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
