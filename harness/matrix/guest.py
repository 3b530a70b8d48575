"""Boot a kernel over this machine's own filesystem (virtme-ng) and run one shell script in it.

``vng`` starts ``virtme-run``, which ``exec``s QEMU; with 9p (no virtiofsd on
Debian 12) nothing else is spawned.  Ownership, so that no QEMU outlives us:

* the chain runs under ``unshare --pid --fork --kill-child``: ``vng`` is PID 1
  of a fresh PID namespace, and when PID 1 dies the kernel kills every process
  in it (QEMU included);
* ``unshare`` itself gets ``PR_SET_PDEATHSIG=SIGKILL``, so a SIGKILL of the
  harness takes the whole namespace down;
* it leads its own process group, which a timeout or Ctrl-C kills at once;
* ``run`` waits for the script; ``start`` returns a ``Running`` guest at once (the
  fleet's lab guests serve SSH until they are stopped);
* ``TMPDIR`` is a directory of ours (``/tmp/isobench-guest-…``), removed
  afterwards; QEMU runs with ``-name isobench-…`` so ``isobench cleanup``
  finds both by name (``harness.matrix.leftovers``).
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness.matrix.leftovers import GUEST_PREFIX, guest_processes
from runtimes import syscalls

__all__ = ["GUEST_PREFIX", "Guest", "GuestError", "Outcome", "Running", "argv", "kill_all", "run", "start",
           "vng_binary"]
ACCELS = ("kvm", "tcg")
#: util-linux's unshare(1), which owns the guest's PID namespace
UNSHARE = "/usr/bin/unshare"
#: guests running now (several with ``isobench matrix --jobs``), for ``kill_all`` on Ctrl-C
_LIVE: set[subprocess.Popen[bytes]] = set()
_KILLED: set[int] = set()  # pids kill_all took down: their run() says so
_LOCK = threading.Lock()


class GuestError(RuntimeError):
    """The guest could not be started at all (vng missing, bad kernel path)."""


@dataclass(frozen=True)
class Guest:
    """What to boot: a kernel image, the accelerator, vCPUs and memory, writable host dirs."""

    kernel: Path
    accel: str = "tcg"
    cpus: int = 2
    memory_mib: int = 1024
    rw_dirs: tuple[Path, ...] = ()
    #: host paths the guest reads through a cached (cache=loose) read-only 9p export:
    #: Python's imports over the default uncached 9p cost a round trip per stat
    cached_paths: tuple[str, ...] = ()
    append: tuple[str, ...] = ()
    #: more QEMU options, each passed as one ``--qemu-opts`` (the fleet lab's loopback-only NIC)
    qemu_opts: tuple[str, ...] = ()
    #: (guest path, host path) read-only shares: what the guest's private tmpfs mounts hide
    #: (/var/cache, where kernels fetched from Debian's archive keep their modules)
    ro_dirs: tuple[tuple[str, Path], ...] = ()

    def __post_init__(self) -> None:
        if self.accel not in ACCELS:
            raise ValueError(f"accelerator {self.accel!r}: one of {', '.join(ACCELS)}")


@dataclass(frozen=True)
class Outcome:
    status: int | None  # the script's exit status; None when it did not finish
    seconds: float
    timed_out: bool
    log: Path  # what vng, QEMU and the script wrote (stdout and stderr)
    detail: str = field(default="")
    interrupted: bool = False  # killed by kill_all (Ctrl-C of a parallel matrix)

    @property
    def ok(self) -> bool:
        return self.status == 0

    def tail(self, lines: int = 40, console: bool = True) -> str:
        """The log's last lines; ``console=False`` leaves out the kernel's own (``[  1.23] …``)."""
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        if not console:
            text = [t for t in text if t.strip() and not t.startswith(("[", "Memory KASLR", "Poking KASLR"))]
        return "\n".join(text[-lines:])


def vng_binary() -> str | None:
    """``vng`` beside this Python (a venv's bin) or on PATH."""
    beside = Path(sys.executable).parent / "vng"
    return str(beside) if beside.exists() else shutil.which("vng")


#: the cached export lives and dies inside the guest; its names lack "isobench" on purpose: the
#: tests inside check that no isobench mount is left in their mount table
CACHED_TAG = "cachedroot"
CACHED_MOUNT = "/run/cachedroot"


def cached_prelude(paths: tuple[str, ...]) -> str:
    """Shell lines that mount the cached export and lay its copies of ``paths`` over the originals."""
    if not paths:
        return ""
    lines = [f"mkdir -p {CACHED_MOUNT}",
             f"mount -t 9p -o ro,trans=virtio,version=9p2000.L,cache=loose,msize=524288 {CACHED_TAG} "
             f"{CACHED_MOUNT} || echo 'isobench-guest: cached root not mounted' >&2"]
    for p in paths:
        q = shlex.quote(p)
        lines.append(f"[ -d {CACHED_MOUNT}{q} ] && mount --bind {CACHED_MOUNT}{q} {q}")
    return "\n".join(lines) + "\n"


#: only warnings and worse reach the console log: a panic or oops is recorded, a boot stays quiet
#: (every character on the emulated UART costs a trap under TCG)
CONSOLE_LOGLEVEL = "loglevel=4"


def argv(g: Guest, name: str, script_file: Path, vng: str = "vng") -> list[str]:
    """The ``vng`` command line that runs ``script_file`` (pure: unit-tested).

    The script goes in a file the guest reads over the root share, not on the command
    line: vng passes ``--exec`` on the kernel command line, and past its 2 KiB limit
    the kernel panics before it has a console."""
    cmd = [vng, "-v", "-r", str(g.kernel), "--name", name, "--memory", f"{g.memory_mib}M",
           "--cpus", str(g.cpus), "--force-9p", "--append", CONSOLE_LOGLEVEL]
    if g.accel == "tcg":
        cmd.append("--disable-kvm")
    for d in g.rw_dirs:
        cmd += ["--rwdir", str(d)]
    cmd += [f"--rodir={guest_path}={host_path}" for guest_path, host_path in g.ro_dirs]
    if g.cached_paths:
        cmd.append(f"--qemu-opts=-virtfs local,path=/,mount_tag={CACHED_TAG},security_model=none,"
                   "readonly=on,multidevs=remap")
    for a in g.append:
        cmd += ["--append", a]
    cmd += [f"--qemu-opts={o}" for o in g.qemu_opts]
    cmd += ["--exec", f"sh {shlex.quote(str(script_file))}"]
    return cmd


def _die_with_parent() -> None:
    syscalls.prctl(syscalls.PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass
class Running:
    """A guest started by ``start``: its process group, its log and its temporary directory.

    ``stop()`` kills the whole group and removes the directory; it is idempotent, and
    ``start``'s caller owns the call (``run`` makes it in a ``finally``)."""

    name: str
    proc: subprocess.Popen[bytes]
    tmp: Path
    log: Path
    started: float

    def wait(self, timeout_s: float | None = None) -> int | None:
        """The script's exit status, or None when it is still running after ``timeout_s``."""
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None

    @property
    def interrupted(self) -> bool:
        with _LOCK:
            return self.proc.pid in _KILLED

    def stop(self) -> None:
        """Power the guest off (SIGKILL to its PID namespace) and wait until none of it is left."""
        try:
            _kill_group(self.proc)
            _wait_gone(self.name)
        finally:
            with _LOCK:
                _LIVE.discard(self.proc)
            shutil.rmtree(self.tmp, ignore_errors=True)


def start(g: Guest, script: str, *, name: str, log: Path, cwd: Path | None = None) -> Running:
    """Boot ``g`` running ``script`` (sh) and return at once; the caller must ``stop()`` it."""
    vng = vng_binary()
    if vng is None:
        raise GuestError("vng (PyPI virtme-ng) is not installed: pip install virtme-ng")
    if not g.kernel.is_file():
        raise GuestError(f"kernel image {g.kernel} does not exist")
    if not name.startswith(GUEST_PREFIX):
        name = GUEST_PREFIX + name
    tmp = Path(tempfile.mkdtemp(prefix=f"{name}-{os.getpid()}-"))
    try:
        env = dict(os.environ, TMPDIR=str(tmp),
                   PATH=f"{Path(vng).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}")
        script_file = tmp / "script.sh"
        script_file.write_text(cached_prelude(g.cached_paths) + script)
        cmd = [UNSHARE, "--pid", "--fork", "--kill-child", "--", *argv(g, name, script_file, vng)]
        with open(log, "ab") as out:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                    env=env, cwd=cwd, start_new_session=True, preexec_fn=_die_with_parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    with _LOCK:
        _LIVE.add(proc)
    return Running(name, proc, tmp, log, time.monotonic())


def run(g: Guest, script: str, *, name: str, log: Path, timeout_s: float, cwd: Path | None = None) -> Outcome:
    """Boot ``g``, run ``script`` (sh) in it, return its exit status; never leaves a process behind."""
    r = start(g, script, name=name, log=log, cwd=cwd)
    try:
        status = r.wait(timeout_s)
        timed_out = status is None
    finally:
        r.stop()
    interrupted = r.interrupted
    detail = (f"no result within {timeout_s:g} s (guest killed)" if timed_out else
              "interrupted (Ctrl-C): guest killed" if interrupted else "")
    status = None if timed_out or interrupted else status
    return Outcome(status, time.monotonic() - r.started, timed_out, log, detail, interrupted)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the whole group (unshare, and through --kill-child the PID namespace) and reap."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def _wait_gone(name: str, timeout_s: float = 15.0) -> None:
    """Until no process of guest ``name`` is left: the kernel kills a PID namespace's processes
    after its PID 1 is gone, not at once; a caller must find none left when run() returns."""
    deadline = time.monotonic() + timeout_s
    while (left := guest_processes(name)) and time.monotonic() < deadline:
        for pid in left:  # anything that escaped the namespace (it cannot, but be sure)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)


def kill_all() -> None:
    """Kill every guest this process runs (another thread's ``run`` then returns)."""
    with _LOCK:
        live = list(_LIVE)
    for proc in live:
        with _LOCK:
            _KILLED.add(proc.pid)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
