"""The workload catalog: identical shell programs for every backend.

Every workload is a ``busybox sh -c`` script that runs the same bytes on every
backend: on bare metal the host's ``/bin/busybox`` and ``/usr/bin/stress-ng``,
elsewhere the copies the rootfs builder put at the same paths.

The marker channel is file descriptor 3 (a pipe on the host, the serial console
in a guest).  A workload writes, one per line::

    ISOBENCH READY              first thing, before any work
    ISOBENCH RESULT key=value   observations only the workload can make

and a guest's init adds ``ISOBENCH EXIT <status>`` after the workload ended.
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

BUSYBOX = "/bin/busybox"
#: the environment a workload starts with inside an isolated environment (the container's, and the
#: bare memory reference's, so the two are compared like for like); nothing of the harness's leaks in
ISOLATED_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root",
                "container": "isobench"}
STRESS_NG = "/usr/bin/stress-ng"
#: the throughput benchmarks' tools, path -> Debian package: in a tree of their own (``WorkloadDef.tools``)
THROUGHPUT_TOOLS: Mapping[str, str] = {"/usr/bin/fio": "fio", "/usr/bin/iperf3": "iperf3", "/usr/bin/sockperf": "sockperf"}
MARKER_FD = 3
READY = "ISOBENCH READY"
RESULT = "ISOBENCH RESULT"
EXIT = "ISOBENCH EXIT"

_ready = f"echo '{READY}' >&{MARKER_FD}"

#: Every workload runs here, whatever the harness's (or runtime's) working directory: a
#: directory that exists and is writable on the host, in the container rootfs and in the
#: guest (a tmpfs there).  stress-ng aborts at once in a read-only cwd ("temp-path '.'
#: must be readable and writeable"); a read-only checkout must not turn that into a sample.
WORKDIR = "/tmp"
#: before the ready marker: a workload that cannot enter WORKDIR never claims to be ready
_enter = f"cd {WORKDIR} || exit 96"


def _then_status(command: str) -> str:
    """Run ``command`` (not exec'd), then report its exit status on the marker channel and
    exit with it: the harness judges the sample by it (with the counters), never assumes
    success.  The shell stays as the parent: a few hundred KiB, counted like any process."""
    return f"{command}; rc=$?; echo '{RESULT} status='$rc >&{MARKER_FD}; exit $rc"


@dataclass(frozen=True)
class Param:
    default: Any
    kind: type
    minimum: float = 0
    help: str = ""


@dataclass(frozen=True)
class WorkloadDef:
    name: str
    help: str
    params: Mapping[str, Param]
    script: Callable[..., str]
    #: programs beyond busybox and stress-ng it runs (path -> Debian package): every backend
    #: gives it the workload tree that holds them (``runtimes.rootfs.for_workload``)
    tools: Mapping[str, str] = field(default_factory=dict)


def _noop() -> str:
    return f"{_ready}; exit 0"


def _idle(seconds: int) -> str:
    return f"{_ready}; exec {BUSYBOX} sleep {seconds}"


def _cpu(threads: int, seconds: float) -> str:
    # stress-ng spins `threads` workers; the cgroup/cputune decides how much CPU they get.
    return f"{_enter}; {_ready}; " + _then_status(
        f"{STRESS_NG} --cpu {threads} --cpu-method int64 --timeout {seconds}s --quiet")


def _mem(mib: int, seconds: float) -> str:
    # --vm-keep: keep the mapping; --vm-hang 0: after touching, hold it; --oomable:
    # do not respawn a worker the OOM killer took, so OOM shows in the counters once.
    return f"{_enter}; {_ready}; " + _then_status(
        f"{STRESS_NG} --vm 1 --vm-bytes {mib}M --vm-keep --vm-hang 0 "
        f"--vm-populate --oomable --timeout {seconds}s --quiet")


def _pids(count: int, seconds: float) -> str:
    # Start `count` sleepers in the background.  busybox ash exits when a fork is
    # refused, so the count is reported after every fork and the last one wins.
    # The shell itself is one process, so `reached` counts it as pids.current does;
    # `tried` is reported before each fork, so the harness knows forks were attempted.
    return (
        f"{_enter}; {_ready}; n=1; i=0; "
        f"while [ $i -lt {count} ]; do "
        f"echo '{RESULT} tried='$((i+1)) >&{MARKER_FD}; "
        f"{BUSYBOX} sleep {seconds} & n=$((n+1)); echo '{RESULT} reached='$n >&{MARKER_FD}; "
        f"i=$((i+1)); done; wait"
    )


def _tools(**_: Any) -> str:
    # alone it shows its tools run; the throughput measurement gives it its own script (argv)
    return f"{_enter}; {_ready}; " + _then_status(" && ".join(f"{t} --version" for t in THROUGHPUT_TOOLS))


CATALOG: dict[str, WorkloadDef] = {
    "noop": WorkloadDef("noop", "write the ready marker and exit at once", {}, _noop),
    "idle": WorkloadDef(
        "idle",
        "sleep for the instance's lifetime",
        {"seconds": Param(3600, int, 1, "how long to sleep if not stopped")},
        _idle,
    ),
    "cpu": WorkloadDef(
        "cpu",
        "T busy threads for D seconds",
        {
            "threads": Param(1, int, 1, "busy threads"),
            "seconds": Param(3, int, 1, "duration (whole seconds: stress-ng reads 0.5s as 0 = forever)"),
        },
        _cpu,
    ),
    "mem": WorkloadDef(
        "mem",
        "allocate and touch N MiB, then hold",
        {
            "mib": Param(64, int, 1, "MiB to allocate and touch"),
            "seconds": Param(5, int, 1, "how long to hold it (whole seconds, as for cpu)"),
        },
        _mem,
    ),
    "pids": WorkloadDef(
        "pids",
        "try to create N processes",
        {
            "count": Param(64, int, 1, "processes to try to create"),
            "seconds": Param(3.0, float, 0.1, "how long the processes live"),
        },
        _pids,
    ),
    "throughput": WorkloadDef(
        "throughput", "the throughput benchmarks' tools (alone: each says its version)",
        {"seconds": Param(3, int, 1, "how long each benchmark measures (whole seconds, as for cpu)"),
         **{f: Param(1, int, 0, f"run the {f} benchmarks (1) or not (0)")
            for f in ("cpu", "memory", "kernel", "storage", "network")},
         "size_mib": Param(128, int, 8, "the storage benchmarks' file (or disk region), MiB")},
        _tools, tools=THROUGHPUT_TOOLS),
}


#: how the harness knows a workload is ready (``Ready.kind``): the catalog's marker line on fd 3;
#: an image workload's exit with status 0, a line of its output, a TCP connection or a 2xx HTTP
#: answer inside the instance's own network namespace (``runtimes.readiness`` probes them)
READY_KINDS = ("marker", "exit", "log", "tcp", "http")


@dataclass(frozen=True)
class Ready:
    """One readiness condition, as data (a guest's init is handed the same thing)."""

    kind: str = "marker"
    port: int | None = None  # tcp, http
    path: str = "/"  # http: the path asked for
    pattern: str | None = None  # log: a regular expression searched in each output line

    def __post_init__(self) -> None:
        if self.kind not in READY_KINDS:
            raise ValueError(f"unknown readiness {self.kind!r} (known: {', '.join(READY_KINDS)})")
        if self.kind in ("tcp", "http") and (self.port is None or isinstance(self.port, bool)
                                            or not 1 <= self.port <= 65535):
            raise ValueError(f"{self.kind} readiness needs a port between 1 and 65535, got {self.port!r}")
        if self.kind == "http" and not self.path.startswith("/"):
            raise ValueError(f"http readiness: the path must start with '/', got {self.path!r}")
        if self.kind == "log":
            if not self.pattern:
                raise ValueError("log readiness needs a regular expression")
            try:
                re.compile(self.pattern)
            except re.error as e:
                raise ValueError(f"log readiness: bad regular expression {self.pattern!r}: {e}") from e

    @classmethod
    def parse(cls, raw: Any) -> Ready:
        """A scenario's ``ready``: ``"exit"``, ``{log = "REGEX"}``, ``{tcp = PORT}`` or
        ``{http = "PORT/PATH"}``; ValueError naming what is wrong."""
        if raw == "exit":
            return cls("exit")
        if not isinstance(raw, Mapping) or len(raw) != 1:
            raise ValueError(f'must be "exit" or a table with one of log, tcp, http, got {raw!r}')
        (kind, value), = raw.items()
        if kind == "log":
            if not isinstance(value, str):
                raise ValueError(f"ready.log must be a string (a regular expression), got {value!r}")
            return cls("log", pattern=value)
        if kind == "tcp":
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"ready.tcp must be a port number, got {value!r}")
            return cls("tcp", port=value)
        if kind == "http":
            port, sep, path = str(value).partition("/")
            if not isinstance(value, str) or not port.isdigit():
                raise ValueError(f'ready.http must be "PORT/PATH" (e.g. "8000/healthz"), got {value!r}')
            return cls("http", port=int(port), path="/" + path if sep else "/")
        raise ValueError(f"unknown readiness {kind!r} (ready is \"exit\", or log, tcp or http)")

    @classmethod
    def from_words(cls, text: str) -> Ready:
        """The form ``describe()`` writes (and an image's ``org.isobench.ready`` label carries):
        ``exit``, ``tcp 6379``, ``http 8000/healthz``, ``log REGEX``."""
        kind, _, rest = text.strip().partition(" ")
        rest = rest.strip()
        if kind == "exit" and not rest:
            return cls("exit")
        if kind == "log" and rest:
            return cls("log", pattern=rest[1:-1] if len(rest) > 1 and rest[0] == rest[-1] == "/" else rest)
        if kind in ("tcp", "http"):
            return cls.parse({kind: int(rest) if kind == "tcp" and rest.isdigit() else rest})
        raise ValueError(f"unknown readiness {text!r} (exit, tcp PORT, http PORT/PATH or log REGEX)")

    def describe(self) -> str:
        """In words, for rows' notes and the manifest: "tcp 6379", "http 8000/healthz"..."""
        if self.kind in ("tcp", "http"):
            return f"{self.kind} {self.port}{self.path if self.kind == 'http' else ''}"
        return f"log /{self.pattern}/" if self.kind == "log" else self.kind


#: the catalog's readiness: its ready marker
MARKER = Ready("marker")


@dataclass(frozen=True)
class ProcessSpec:
    """What an image workload's first process is: the same on every backend."""

    argv: tuple[str, ...]
    env: Mapping[str, str]
    cwd: str = "/"
    uid: int = 0
    gid: int = 0
    groups: tuple[int, ...] = ()


class AnyWorkload(Protocol):
    """What a backend, a measurement and the runner ask of a workload, whatever its kind: the
    catalog's ``Workload`` below, or one a ``[workload.NAME]`` table defines
    (``runtimes.workload_kinds``: an image's ``ImageWorkload``).  A backend that needs more of
    one kind (an image's layers) asks for it with ``isinstance``."""

    @property
    def name(self) -> str: ...
    @property
    def kind(self) -> str: ...  # "catalog", or the kind that defined it
    @property
    def ready(self) -> Ready: ...
    @property
    def image(self) -> Any: ...  # the image it runs (``runtimes.image.model.Image``), None for the catalog
    #: the first process, resolved (None: the backend's own environment around ``argv()``)
    @property
    def process(self) -> ProcessSpec | None: ...
    @property
    def params(self) -> Mapping[str, Any]: ...
    @property
    def exits_by_itself(self) -> bool: ...
    @property
    def stop_signal(self) -> int | None: ...  # None: stop() kills at once
    @property
    def stop_grace_s(self) -> float: ...
    @property
    def tools(self) -> Mapping[str, str]: ...  # programs beyond the base workload tree's (path -> package)
    def argv(self) -> list[str]: ...
    def bound(self) -> dict[str, Any]: ...  # its parameters, defaults filled in
    def describe(self) -> dict[str, Any]: ...  # what the manifest records of it


@dataclass(frozen=True)
class Workload:
    """A catalog entry with its parameters bound: what every backend runs (an ``AnyWorkload``)."""

    name: str
    params: Mapping[str, Any] = field(default_factory=dict)
    kind: ClassVar[str] = "catalog"
    ready: ClassVar[Ready] = MARKER
    image: ClassVar[None] = None
    process: ClassVar[None] = None
    #: None: stop() kills at once (SIGKILL), as it always has for the catalog
    stop_signal: ClassVar[int | None] = None
    stop_grace_s: ClassVar[float] = 0.0

    @property
    def exits_by_itself(self) -> bool:
        """It ends on its own right after ready (startup measures launch -> exit)."""
        return self.name == "noop"

    def describe(self) -> dict[str, Any]:
        """What the manifest records of it."""
        return {"kind": self.kind, "name": self.name, "params": self.bound(), "ready": self.ready.describe()}

    def __post_init__(self) -> None:
        if self.name not in CATALOG:
            raise ValueError(f"unknown workload {self.name!r} (known: {', '.join(CATALOG)})")
        d = CATALOG[self.name]
        unknown = set(self.params) - set(d.params)
        if unknown:
            raise ValueError(f"workload {self.name!r} has no parameter {sorted(unknown)[0]!r}")
        for key, value in self.params.items():
            p = d.params[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"workload {self.name!r}: {key} must be a finite number, got {value!r}")
            if p.kind is int and value != int(value):
                raise ValueError(f"workload {self.name!r}: {key} must be a whole number, got {value}")
            if value < p.minimum:
                raise ValueError(f"workload {self.name!r}: {key} must be >= {p.minimum}, got {value}")

    def bound(self) -> dict[str, Any]:
        d = CATALOG[self.name]
        return {k: p.kind(self.params.get(k, p.default)) for k, p in d.params.items()}

    def script(self) -> str:
        return CATALOG[self.name].script(**self.bound())

    @property
    def tools(self) -> Mapping[str, str]:
        return CATALOG[self.name].tools

    def argv(self) -> list[str]:
        """The command line, with paths valid on the host and inside the rootfs alike."""
        return [BUSYBOX, "sh", "-c", self.script()]

    def shell_command(self) -> str:
        return shlex.join(self.argv())


def parse_marker_line(line: str) -> tuple[str, str] | None:
    """``ISOBENCH READY`` -> ("ready", ""); ``ISOBENCH RESULT k=v`` -> ("result", "k=v");
    ``ISOBENCH EXIT 3`` -> ("exit", "3"); anything else -> None (console noise)."""
    line = line.strip().replace("\r", "")
    for tag, kind in ((READY, "ready"), (RESULT, "result"), (EXIT, "exit")):
        if line == tag or line.startswith(tag + " "):
            return kind, line[len(tag) :].strip()
    return None


#: where a guest's own cgroup for the workload lives (cgroup2, mounted by the wrapper below)
GUEST_CGROUP = "/sys/fs/cgroup/isobench-workload"


def in_guest_cgroup(argv: list[str], memory_mib: int | None, pids: int | None) -> list[str]:
    """``argv`` wrapped to run inside a cgroup of the guest's own kernel with these limits.

    A guest is judged on what the guest enforces: the memory and pids limits are applied
    by its kernel exactly as on a host (memory.max, swap off, pids.max).  The wrapper
    stays outside the cgroup, so the workload's first process is the cgroup's first,
    as on a host; after the workload it reports the cgroup's own counters
    (``guest_cg_*``) and exits with the workload's status.  Without limits, ``argv``."""
    setup = guest_cgroup_setup(memory_mib, pids)
    if setup is None:
        return argv
    # the inner sh's $$ is its own pid: it joins the cgroup, then becomes the workload
    run = f"{BUSYBOX} sh -c 'echo $$ > {GUEST_CGROUP}/cgroup.procs && exec \"$@\"' workload {shlex.join(argv)}"
    return [BUSYBOX, "sh", "-c", f"{setup}; {run}; rc=$?; {guest_cgroup_report()}; exit $rc"]


def guest_cgroup_setup(memory_mib: int | None, pids: int | None) -> str | None:
    """Shell that makes ``GUEST_CGROUP`` with these limits (None: no limit, no cgroup).  Every
    step must work (a limit that was not applied is no measurement): on failure it exits 97
    before the workload starts, with the reason on the console."""
    if memory_mib is None and pids is None:
        return None
    g, b = GUEST_CGROUP, BUSYBOX
    setup = [f"{{ {b} grep -q ' /sys/fs/cgroup cgroup2 ' /proc/mounts || {b} mount -t cgroup2 none /sys/fs/cgroup; }}",
             "echo '+memory +pids' > /sys/fs/cgroup/cgroup.subtree_control", f"{b} mkdir -p {g}"]
    if memory_mib is not None:
        setup.append(f"echo {memory_mib << 20} > {g}/memory.max")
    if pids is not None:
        setup.append(f"echo {pids} > {g}/pids.max")
    swap_off = f"{{ [ ! -e {g}/memory.swap.max ] || echo 0 > {g}/memory.swap.max; }}"
    fail = "{ echo 'isobench: cannot apply the limits in the guest cgroup' >&2; exit 97; }"
    return f"{{ {' && '.join(setup)} && {swap_off}; }} || {fail}"


def guest_cgroup_report() -> str:
    """Shell that reports ``GUEST_CGROUP``'s own counters (``guest_cg_*``) on the marker channel."""
    g, b = GUEST_CGROUP, BUSYBOX
    return (f"while read k v; do echo \"{RESULT} guest_cg_mem_$k=$v\" >&{MARKER_FD}; "
            f"done < {g}/memory.events; "
            f"echo \"{RESULT} guest_cg_mem_peak=$({b} cat {g}/memory.peak 2>/dev/null)\" >&{MARKER_FD}; "
            f"read k v < {g}/pids.events; echo \"{RESULT} guest_cg_pids_max=$v\" >&{MARKER_FD}")
