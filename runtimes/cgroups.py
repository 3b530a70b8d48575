"""cgroups v1 and v2 behind one small interface.

Every cgroup isobench makes is created *below the cgroup this process is in*
(``/proc/self/cgroup``), in each hierarchy it needs, and carries ``isobench`` in
its name.  A process is never moved upward or out of that sub-tree: this is
what a delegated sub-tree (systemd ``Delegate=yes``, a CI sandbox) allows.

    cg = Cgroup.create("isobench-r1-0", Limits(cpu_quota=0.5))
    cg.attach(pid)            # or, on v2, clone straight into cg.dir_fd()
    cg.usage()                # {"cpu_usage_ns": ..., "cpu_nr_throttled": ...}
    cg.remove()               # kills what is left, then rmdir; idempotent
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from runtimes.base import PREFIX, Limits

CGROUP_ROOT = Path("/sys/fs/cgroup")
V1_CONTROLLERS = ("cpu", "cpuacct", "memory", "pids")
V2_CONTROLLERS = ("cpu", "memory", "pids")


class CgroupError(RuntimeError):
    """A cgroup could not be made or configured; the message says why and how to fix it."""


@dataclass(frozen=True)
class Mount:
    path: Path
    version: int
    controllers: frozenset[str]


# The mount table and our own cgroup are read once per process (parsing them cost
# ~2 ms per instance, most of the create time); the v2 delegation, which moves us
# into a leaf, clears the caches.
@functools.lru_cache(maxsize=1)
def _mounts() -> list[Mount]:
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        pre, _, post = line.partition(" - ")
        fields = pre.split()
        fstype, _, superopts = (post.split() + ["", "", ""])[:3]
        if fstype == "cgroup2":
            found.append(Mount(Path(fields[4]), 2, frozenset()))
        elif fstype == "cgroup":
            opts = set(superopts.split(","))
            found.append(Mount(Path(fields[4]), 1, frozenset(opts & set(V1_CONTROLLERS + ("cpuset", "freezer", "blkio", "devices")))))
    return found


def own_paths() -> dict[str, str]:
    """Controller (or "" for the unified hierarchy) -> this process's cgroup path."""
    return dict(_own_paths())


@functools.lru_cache(maxsize=1)
def _own_paths() -> dict[str, str]:
    paths: dict[str, str] = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, ctrls, path = line.split(":", 2)
        if ctrls == "":
            paths[""] = path
        for c in ctrls.split(","):
            if c and not c.startswith("name="):
                paths[c] = path
    return paths


def _v2_mount() -> Mount | None:
    return next((m for m in _mounts() if m.version == 2), None)


def _v2_available(mount: Mount) -> set[str]:
    own = _v2_base()
    try:
        return set((mount.path / own.lstrip("/") / "cgroup.controllers").read_text().split())
    except OSError:
        return set()


@functools.lru_cache(maxsize=1)
def version() -> int:
    """2 when the unified hierarchy carries cpu, memory and pids (at our level, or on a
    pure v2 host where no v1 hierarchy has them); 1 otherwise (v1 or hybrid)."""
    v2 = _v2_mount()
    if v2 is None:
        return 1
    v1_controllers = {c for m in _mounts() if m.version == 1 for c in m.controllers}
    if set(V2_CONTROLLERS) <= _v2_available(v2) or not set(V2_CONTROLLERS) & v1_controllers:
        return 2
    return 1


#: on v2 the harness moves itself into this leaf of its own cgroup, so that the own
#: cgroup holds no process and may hand cpu/memory/pids to the instances' cgroups
HARNESS_LEAF = f"{PREFIX}-harness"


def _v2_base() -> str:
    """Our own v2 cgroup path, seen from above the harness leaf we may have moved into."""
    own = own_paths().get("", "/")
    return own.rsplit("/", 1)[0] or "/" if own.rsplit("/", 1)[-1] == HARNESS_LEAF else own


def describe() -> dict[str, object]:
    """For the manifest and the doctor: version and usable controllers."""
    v = version()
    if v == 2:
        v2 = _v2_mount()
        assert v2 is not None
        return {"version": 2, "mount": str(v2.path), "controllers": sorted(_v2_available(v2))}
    ctrls = sorted({c for m in _mounts() if m.version == 1 for c in m.controllers})
    v2 = _v2_mount()
    return {"version": 1, "controllers": ctrls, "unified": str(v2.path) if v2 else None,
            "hybrid": v2 is not None}


def _write(path: Path, value: str) -> None:
    try:
        path.write_text(value)
    except OSError as e:
        raise CgroupError(f"cannot write {value!r} to {path}: {e.strerror}") from e


def _read_kv(path: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1].lstrip("-").isdigit():
                out[parts[0]] = int(parts[1])
    return out


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return None if text == "max" else int(text)


def _v1_cfs(d: Path) -> dict[str, float]:
    """The CFS bandwidth the kernel applied (v1): quota (-1 = none) and period, in µs."""
    q, p = _read_int(d / "cpu.cfs_quota_us"), _read_int(d / "cpu.cfs_period_us")
    return {"cpu_quota_us": q, "cpu_period_us": p} if q is not None and p is not None else {}


def _v2_cpu_max(d: Path) -> dict[str, float]:
    """The CFS bandwidth the kernel applied (v2 cpu.max "QUOTA PERIOD", "max" = none), in µs."""
    try:
        quota, period = (d / "cpu.max").read_text().split()
        return {"cpu_quota_us": -1 if quota == "max" else int(quota), "cpu_period_us": int(period)}
    except (OSError, ValueError):
        return {}


def validate_limits(limits: Limits) -> None:
    """Reject what no kernel accepts, before anything is created."""
    if limits.cpu_quota is not None and limits.cpu_quota <= 0:
        raise CgroupError(f"cpu quota must be > 0 CPUs, got {limits.cpu_quota}")
    if not 1000 <= limits.cpu_period_us <= 1_000_000:
        raise CgroupError(f"cpu period must be 1000..1000000 us, got {limits.cpu_period_us}")
    if limits.memory_mib is not None and limits.memory_mib < 4:
        raise CgroupError(f"memory limit must be >= 4 MiB, got {limits.memory_mib}")
    if limits.pids is not None and limits.pids < 1:
        raise CgroupError(f"pids limit must be >= 1, got {limits.pids}")


class Cgroup:
    """One instance's cgroup, in one (v2) or several (v1) hierarchies."""

    def __init__(self, name: str, version: int, dirs: dict[str, Path]):
        self.name = name
        self.version = version
        #: v1: controller -> directory; v2: {"": directory}
        self.dirs = dirs
        self.removed = False

    # -- creation ---------------------------------------------------------
    @classmethod
    def create(cls, name: str, limits: Limits = Limits(), *, v: int | None = None) -> Cgroup:
        """Make the cgroup below our own and apply ``limits``; all or nothing."""
        if PREFIX not in name:
            raise CgroupError(f"cgroup name {name!r} must contain {PREFIX!r}")
        validate_limits(limits)
        v = v or version()
        cg = cls(name, v, cls._v2_dirs(name) if v == 2 else cls._v1_dirs(name))
        made: list[Path] = []
        try:
            for d in dict.fromkeys(cg.dirs.values()):
                try:
                    os.mkdir(d)
                except FileExistsError:
                    # someone's live instance, or a leftover: never take it over (or remove it)
                    raise CgroupError(f"cgroup {d} already exists (a leftover? `isobench cleanup` "
                                      f"removes those)") from None
                made.append(d)
            cg.apply(limits)
        except BaseException:
            for d in reversed(made):  # only what this call made; nothing runs in it yet
                _rmdir(d)
            raise
        return cg

    @staticmethod
    def _v1_dirs(name: str) -> dict[str, Path]:
        own = own_paths()
        dirs: dict[str, Path] = {}
        for m in _mounts():
            if m.version != 1:
                continue
            for c in m.controllers & set(V1_CONTROLLERS):
                dirs[c] = m.path / own.get(c, "/").lstrip("/") / name
        missing = set(V1_CONTROLLERS) - set(dirs)
        if missing:
            raise CgroupError(f"cgroup v1 controllers not mounted: {', '.join(sorted(missing))}")
        return dirs

    @staticmethod
    def _v2_dirs(name: str) -> dict[str, Path]:
        m = _v2_mount()
        if m is None:
            raise CgroupError("no cgroup2 mount found")
        parent = m.path / _v2_base().lstrip("/")
        if version() == 2:
            _delegate_controllers(parent)
        return {"": parent / name}

    def apply(self, limits: Limits) -> None:
        if self.version == 2:
            d = self.dirs[""]
            for needed, file in ((limits.cpu_quota, "cpu.max"), (limits.memory_mib, "memory.max"),
                                 (limits.pids, "pids.max")):
                if needed is not None and not (d / file).exists():
                    ctrl = file.split(".")[0]
                    raise CgroupError(f"cgroup v2: the {ctrl} controller is not delegated to {d.parent}, "
                                      f"so this {ctrl} limit cannot be applied (run isobench in a delegated "
                                      f"scope: systemd-run --scope -p Delegate=yes -- isobench …)")
            if limits.cpu_quota is not None:
                _write(d / "cpu.max", f"{limits.cpu_quota_us} {limits.cpu_period_us}")
            if limits.memory_mib is not None:
                _write(d / "memory.max", str(limits.memory_mib << 20))
                if (d / "memory.swap.max").exists():
                    _write(d / "memory.swap.max", "0")
            if limits.pids is not None:
                _write(d / "pids.max", str(limits.pids))
            return
        if limits.cpu_quota is not None:
            _write(self.dirs["cpu"] / "cpu.cfs_period_us", str(limits.cpu_period_us))
            _write(self.dirs["cpu"] / "cpu.cfs_quota_us", str(limits.cpu_quota_us))
        if limits.memory_mib is not None:
            mem = self.dirs["memory"]
            _write(mem / "memory.limit_in_bytes", str(limits.memory_mib << 20))
            if (mem / "memory.memsw.limit_in_bytes").exists():  # swap accounting on
                _write(mem / "memory.memsw.limit_in_bytes", str(limits.memory_mib << 20))
            with contextlib.suppress(CgroupError):
                _write(mem / "memory.swappiness", "0")
        if limits.pids is not None:
            _write(self.dirs["pids"] / "pids.max", str(limits.pids))

    # -- processes --------------------------------------------------------
    def procs_files(self) -> list[Path]:
        return [d / "cgroup.procs" for d in dict.fromkeys(self.dirs.values())]

    def attach(self, pid: int) -> None:
        for f in self.procs_files():
            _write(f, str(pid))

    def dir_fd(self) -> int:
        """v2 only: an O_PATH-able directory fd for ``clone3(CLONE_INTO_CGROUP)``."""
        if self.version != 2:
            raise CgroupError("CLONE_INTO_CGROUP needs cgroup v2")
        return os.open(self.dirs[""], os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)

    def pids(self) -> list[int]:
        found: set[int] = set()
        for f in self.procs_files():
            with contextlib.suppress(OSError):
                found.update(int(p) for p in f.read_text().split())
        return sorted(found)

    def kill(self, timeout: float = 5.0) -> None:
        """SIGKILL everything inside and wait until it is gone."""
        deadline = time.monotonic() + timeout
        kill_file = self.dirs.get("", Path("/nonexistent")) / "cgroup.kill"
        while True:
            pids = self.pids()
            if not pids:
                return
            if kill_file.exists():
                with contextlib.suppress(OSError):
                    kill_file.write_text("1")
            else:
                for p in pids:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(p, signal.SIGKILL)
            if time.monotonic() > deadline:
                raise CgroupError(f"processes {pids} in {self.name} survive SIGKILL")
            time.sleep(0.002)

    # -- counters ---------------------------------------------------------
    def cpu_counters(self) -> dict[str, float]:
        """Only the CPU counters of ``usage()`` (same keys): ~0.1 ms instead of ~0.3, for
        reading them once per CFS period."""
        u: dict[str, float] = {}
        if self.version == 2:
            st = _read_kv(self.dirs[""] / "cpu.stat")
            if "usage_usec" in st:
                u["cpu_usage_ns"] = st["usage_usec"] * 1000
            if "nr_periods" in st:
                u.update(cpu_nr_periods=st["nr_periods"], cpu_nr_throttled=st["nr_throttled"],
                         cpu_throttled_ns=st["throttled_usec"] * 1000)
            return u
        val = _read_int(self.dirs["cpuacct"] / "cpuacct.usage") if "cpuacct" in self.dirs else None
        if val is not None:
            u["cpu_usage_ns"] = val
        st = _read_kv(self.dirs["cpu"] / "cpu.stat")
        if "nr_periods" in st:
            u.update(cpu_nr_periods=st["nr_periods"], cpu_nr_throttled=st["nr_throttled"],
                     cpu_throttled_ns=st["throttled_time"])
        return u

    def usage(self) -> dict[str, float]:
        u: dict[str, float] = {}
        if self.version == 2:
            d = self.dirs[""]
            st = _read_kv(d / "cpu.stat")
            if "usage_usec" in st:
                u["cpu_usage_ns"] = st["usage_usec"] * 1000
            if "nr_periods" in st:
                u["cpu_nr_periods"] = st["nr_periods"]
                u["cpu_nr_throttled"] = st["nr_throttled"]
                u["cpu_throttled_ns"] = st["throttled_usec"] * 1000
            u.update(_v2_cpu_max(d))
            for key, fname in (("mem_current_bytes", "memory.current"), ("mem_peak_bytes", "memory.peak"),
                               ("pids_current", "pids.current"), ("pids_peak", "pids.peak")):
                val = _read_int(d / fname)
                if val is not None:
                    u[key] = val
            ev = _read_kv(d / "memory.events")
            if ev:
                u["mem_failcnt"] = ev.get("max", 0)
                u["oom_events"] = ev.get("oom", 0)
                u["oom_kill"] = ev.get("oom_kill", 0)
            pe = _read_kv(d / "pids.events")
            if pe:
                u["pids_refused"] = pe.get("max", 0)
            return u
        cpuacct = self.dirs.get("cpuacct")
        if cpuacct is not None:
            val = _read_int(cpuacct / "cpuacct.usage")
            if val is not None:
                u["cpu_usage_ns"] = val
        st = _read_kv(self.dirs["cpu"] / "cpu.stat")
        if "nr_periods" in st:
            u["cpu_nr_periods"] = st["nr_periods"]
            u["cpu_nr_throttled"] = st["nr_throttled"]
            u["cpu_throttled_ns"] = st["throttled_time"]
        u.update(_v1_cfs(self.dirs["cpu"]))
        mem = self.dirs["memory"]
        for key, fname in (("mem_current_bytes", "memory.usage_in_bytes"),
                           ("mem_peak_bytes", "memory.max_usage_in_bytes"),
                           ("mem_failcnt", "memory.failcnt")):
            val = _read_int(mem / fname)
            if val is not None:
                u[key] = val
        # With swap accounting the memsw counter is charged first; when its limit (set
        # equal to the memory limit) is hit, memory.failcnt never moves: count both.
        memsw_failcnt = _read_int(mem / "memory.memsw.failcnt")
        if memsw_failcnt is not None and "mem_failcnt" in u:
            u["mem_failcnt"] += memsw_failcnt
        oom = _read_kv(mem / "memory.oom_control")
        if "oom_kill" in oom:
            u["oom_kill"] = oom["oom_kill"]
        val = _read_int(self.dirs["pids"] / "pids.current")
        if val is not None:
            u["pids_current"] = val
        pe = _read_kv(self.dirs["pids"] / "pids.events")
        if pe:
            u["pids_refused"] = pe.get("max", 0)
        return u

    # -- teardown ---------------------------------------------------------
    def remove(self) -> None:
        """Kill what is left, then remove every directory; safe to call twice."""
        if self.removed:
            return
        existing = [d for d in dict.fromkeys(self.dirs.values()) if d.exists()]
        if existing:
            self.kill()
        for d in existing:
            _rmdir(d)
        self.removed = True

    def __repr__(self) -> str:
        return f"Cgroup({self.name!r}, v{self.version})"


def _rmdir(d: Path, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            os.rmdir(d)
            return
        except FileNotFoundError:
            return
        except OSError as e:
            # EBUSY while the last task is still being torn down after SIGKILL.
            if e.errno != errno.EBUSY or time.monotonic() > deadline:
                raise CgroupError(f"cannot remove cgroup {d}: {e.strerror}") from e
            time.sleep(0.002)


def prepare() -> None:
    """v2: hand cpu/memory/pids down below our own cgroup now, while this process may
    still be alone in it (before it starts helpers, a test suite its subprocesses)."""
    m = _v2_mount()
    if m is not None and version() == 2:
        _delegate_controllers(m.path / _v2_base().lstrip("/"))


#: v2 parents whose delegation is done: Cgroup.create is on the timed launch path
_delegated: set[Path] = set()


def _delegate_controllers(parent: Path) -> None:
    """v2: make cpu, memory and pids available to children of ``parent``.

    The "no internal processes" rule forbids enabling controllers in a cgroup
    that holds processes.  If our own process is the only one there (a
    ``systemd-run --scope -p Delegate=yes`` or a CI job), it moves itself *down*
    into a leaf; otherwise it says how to get a delegated scope.
    """
    if parent in _delegated:
        return
    enabled = set((parent / "cgroup.subtree_control").read_text().split())
    # Only what our parent delegated to us can be handed on; a limit that needs a
    # controller missing here fails when it is applied, with its own message.
    want = set(V2_CONTROLLERS) & set((parent / "cgroup.controllers").read_text().split())
    if want <= enabled:
        _delegated.add(parent)
        return
    hint = "run isobench in a delegated scope: systemd-run --scope -p Delegate=yes -- isobench …"
    procs = {int(p) for p in (parent / "cgroup.procs").read_text().split()}
    if procs and procs != {os.getpid()}:
        raise CgroupError(f"cgroup v2: {parent} holds other processes, so cpu/memory/pids cannot be "
                          f"handed below it; {hint}")
    if procs:  # only us: move down into the leaf (never up), which empties our own cgroup
        leaf = parent / HARNESS_LEAF
        leaf.mkdir(exist_ok=True)
        _write(leaf / "cgroup.procs", str(os.getpid()))
        _own_paths.cache_clear()
    _write(parent / "cgroup.subtree_control", " ".join(f"+{c}" for c in sorted(want - enabled)))
    _delegated.add(parent)


def find_leftovers() -> Iterator[Path]:
    """Every isobench cgroup directory below our own cgroups, deepest first."""
    own = own_paths()
    seen: set[Path] = set()
    for m in _mounts():
        keys = [""] if m.version == 2 else list(m.controllers)
        for k in keys:
            base = m.path / (_v2_base() if k == "" else own.get(k, "/")).lstrip("/")
            if base in seen or not base.is_dir():
                continue
            seen.add(base)
            for d in sorted(_named_dirs(base), key=lambda p: -len(p.parts)):
                if d.is_dir() and not _live_harness_leaf(d):
                    yield d


def _named_dirs(base: Path) -> list[Path]:
    """isobench directories below ``base``.  os.walk, unlike Path.rglob, shrugs off a
    directory that another run removes while the walk is under way."""
    return [Path(top) / d for top, dirs, _ in os.walk(base) for d in dirs if d.startswith(PREFIX)]


def _live_harness_leaf(d: Path) -> bool:
    """The v2 leaf running harnesses moved into: a leftover only once it is empty."""
    if d.name != HARNESS_LEAF:
        return False
    with contextlib.suppress(OSError):
        return bool((d / "cgroup.procs").read_text().split())
    return False


def remove_dir(d: Path) -> None:
    """Kill everything in one leftover cgroup directory and remove it."""
    procs = d / "cgroup.procs"
    deadline = time.monotonic() + 5
    while procs.exists():
        pids = [int(p) for p in procs.read_text().split()]
        if not pids:
            break
        for p in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)
        if time.monotonic() > deadline:
            raise CgroupError(f"processes {pids} in {d} survive SIGKILL")
        time.sleep(0.005)
    _rmdir(d)
