"""The ``podman`` peer: ``podman run`` with crun on the same image, the path a user types.

A startup reference for the whole image -> overlay -> runtime path: podman's own storage
(isobench's, ``<cache>/podman``, never the host's), its own overlay mount, conmon, crun.
The image is pulled once per run into that storage from the image store's OCI layout
(``oci:<store>:<name>``: the same manifest digest, checked), before any ``t_launch``; each
launch is ``podman run --rm`` of that image id with the workload's exact process (entrypoint
and args, env, workdir, user and groups), ``--network none`` (its own namespace with ``lo``
only: no traffic leaves it), and the same ``nofile`` rlimit as every backend.  Otherwise
podman's defaults stand (its seccomp profile and capability set): it is measured as users
run it.

Differences, said in ``metadata()`` and docs/images.md: ``--cgroups disabled`` (podman's
cgroupfs manager would create cgroups at the roots of a v1 host's hierarchies, outside
ours: the container stays in conmon's, which is below ours), so podman takes no limits
and runs ``startup`` only; crun 1.8 refuses a hybrid host, so podman runs in the same
mount namespace as ``oci:crun`` (``runtimes.oci.view``: the cgroup2 mount hidden);
``RLIMIT_NPROC`` is podman's own (it runs itself with 32768 here and cannot pass more on
without CAP_SYS_RESOURCE).  ``t_exit`` is the exit of the container's process (its
pidfd), before podman removes the container (``--rm``: teardown, in exit -> clean).
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import select
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

from runtimes.base import PREFIX, Backend, BackendError, Instance, LaunchSpec, Timestamps, now_ns
from runtimes.declaration import Declaration
from runtimes.image.model import Image
from runtimes.process import ProcessInstance, instance_log, launching
from runtimes.rootfs import cache_dir
from runtimes.stdio import Stdio

RUNROOT = Path(f"/run/{PREFIX}-podman")
#: podman runs itself with this RLIMIT_NPROC (podman 4.3, measured) and cannot hand a container more
PODMAN_NPROC = 32768
NOFILE = 1024  # as runtimes.container.hardening.RLIMITS: every backend's
TIMEOUT_S = 120.0


def storage_root() -> Path:
    return cache_dir() / "podman" / "storage"


def _which(name: str) -> str | None:
    return shutil.which(name) or next((p for d in ("/usr/bin", "/usr/sbin") if os.access(p := f"{d}/{name}", os.X_OK)),
                                      None)


def global_args(podman: str) -> list[str]:
    """podman's options for isobench's own storage (nothing of the host's podman is touched)."""
    return [podman, "--root", str(storage_root()), "--runroot", str(RUNROOT), "--storage-driver", "overlay",
            "--cgroup-manager", "cgroupfs", "--events-backend", "none", "--log-level", "error"]


class PodmanInstance(ProcessInstance):
    """``proc`` is podman; the container's process is read from ``--pidfile``."""

    own_netns = True
    workload_env = False  # podman gets the harness's environment; the container the image's (--env)

    def __init__(self, spec: LaunchSpec, times: Timestamps, backend: PodmanBackend, pidfile: Path, stdio: Stdio):
        super().__init__(spec, None, times, stdio)
        self.backend = backend
        self.pidfile = pidfile
        self._pidfd: int | None = None
        self._cpid: int | None = None

    def container_pid(self) -> int | None:
        """The container's first process, once podman wrote it (a pidfd is kept to see its exit)."""
        if self._pidfd is None:
            try:
                pid = int(self.pidfile.read_text().strip() or 0)
                self._pidfd = os.pidfd_open(pid) if pid > 0 else None
                self._cpid = pid
            except (OSError, ValueError):
                return None
        return self._cpid

    def processes(self) -> list[int]:
        from runtimes.readiness import descendants

        pids = [self.proc.pid] if self.proc is not None and self.proc.poll() is None else []
        cpid = self.container_pid()
        return pids + (descendants(cpid) if cpid is not None and os.path.exists(f"/proc/{cpid}") else [])

    _probe_pids = processes  # the container is conmon's child, not podman's: read from the pidfile

    def _signal(self, sig: int) -> None:
        cpid = self.container_pid()
        if cpid is None:
            raise ProcessLookupError
        os.kill(cpid, sig)

    def _container_gone(self, timeout: float) -> bool:
        """Wait up to ``timeout`` for the container's process to end; records ``t_exit`` then."""
        if self.container_pid() is None or self._pidfd is None:
            return False
        if select.select([self._pidfd], [], [], timeout)[0]:
            if self.times.t_exit is None:
                self.times.t_exit = now_ns()
            return True
        return False

    def _wait_exit(self, timeout: float) -> tuple[int, int | None]:
        self._container_gone(timeout)
        return self.wait(timeout), self.times.t_exit

    def stop(self) -> None:
        self._stop_gracefully()
        with contextlib.suppress(ProcessLookupError):
            self._signal(signal.SIGKILL)
        self._container_gone(10.0)
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(TIMEOUT_S)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)

    def _stop_gracefully(self) -> None:
        sig, grace = self.spec.workload.stop_signal, self.spec.workload.stop_grace_s
        if sig is None or sig == signal.SIGKILL:
            return
        with contextlib.suppress(ProcessLookupError):
            self._signal(sig)
            self._container_gone(grace)

    def _release(self) -> None:
        """podman removed the container (``--rm``) unless it was killed first: then ``rm -f``."""
        try:
            killed = self.proc is not None and (self.proc.returncode or 0) < 0  # before its --rm ran
            if killed or self.times.t_ready is None:
                self.backend.podman("rm", "--force", "--ignore", self.name)
        finally:
            if self._pidfd is not None:
                os.close(self._pidfd)
                self._pidfd = None
            with contextlib.suppress(FileNotFoundError):
                self.pidfile.unlink()


class PodmanBackend(Backend):
    name = "podman"

    def __init__(self) -> None:
        self.exe = _which("podman")
        self.crun = _which("crun")
        self.nsenter = _which("nsenter")
        self._holder: Any = None
        #: image manifest digest -> podman's image id (its config digest), pulled this run
        self._pulled: dict[str, str] = {}

    def available(self) -> str | None:
        if self.exe is None:
            return "podman not found (fix: apt-get install podman)"
        if self.crun is None:
            return "crun not found (fix: apt-get install crun)"
        if self.nsenter is None:
            return "nsenter not found (fix: apt-get install util-linux)"
        if os.geteuid() != 0:
            return "podman is compared as root (rootless podman is not)"
        return None

    def _view_prefix(self) -> list[str]:
        """nsenter into the mount namespace where crun sees a cgroup layout it accepts."""
        from runtimes.oci import view

        if self._holder is None or not self._holder.alive():
            self._holder = view.Holder(view.make(hide_cgroup2_on_hybrid=True))
        prefix: list[str] = self._holder.nsenter(self.nsenter or "nsenter")
        return prefix

    def podman(self, *args: str, timeout: float = TIMEOUT_S) -> subprocess.CompletedProcess[str]:
        assert self.exe is not None
        return subprocess.run([*self._view_prefix(), *global_args(self.exe), *args], stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=timeout, check=False)

    def prepare(self) -> None:
        storage_root().mkdir(parents=True, exist_ok=True, mode=0o700)
        (RUNROOT / "pids").mkdir(parents=True, exist_ok=True, mode=0o700)

    def pull(self, image: Image) -> str:
        """The image in podman's storage, from the image store's layout (once): its image id."""
        if image.digest in self._pulled:
            return self._pulled[image.digest]
        from runtimes.image.store import Store

        image_id = image.config_digest.split(":")[-1]
        if self.podman("image", "exists", image_id).returncode != 0:
            r = self.podman("pull", "--quiet", f"oci:{Store().root}:{image.name}")
            if r.returncode != 0:
                raise BackendError(f"podman cannot pull {image.name} from the image store: {r.stderr.strip()}")
        r = self.podman("image", "inspect", "--format", "{{.Digest}}", image_id)
        if r.returncode != 0 or r.stdout.strip() != image.digest:
            raise BackendError(f"podman's copy of {image.name} is not the stored image (digest "
                               f"{r.stdout.strip() or r.stderr.strip()!r}, stored {image.digest})")
        self._pulled[image.digest] = image_id
        return image_id

    def launch(self, spec: LaunchSpec) -> Instance:
        process, image = spec.workload.process, spec.workload.image
        if process is None or image is None:
            raise BackendError("podman runs image workloads only ([workload.NAME] with an image)")
        if spec.limits.any():
            raise BackendError("podman is a startup reference here: it runs without a cgroup of its own "
                               "(--cgroups disabled), so it takes no limits")
        self.prepare()
        image_id = self.pull(image)  # before t_launch, as every backend prepares its root
        pidfile = RUNROOT / "pids" / spec.instance
        nproc = min(resource.getrlimit(resource.RLIMIT_NPROC)[1], PODMAN_NPROC)
        user = ["--user", f"{process.uid}:{process.gid}", *(a for g in process.groups for a in ("--group-add", str(g)))]
        env = [a for k, v in process.env.items() for a in ("--env", f"{k}={v}")]
        argv = [*self._view_prefix(), *global_args(self.exe or "podman"), "run", "--rm", "--name", spec.instance,
                "--network", "none", "--cgroups", "disabled", "--runtime", self.crun or "crun",
                "--pidfile", str(pidfile), "--ulimit", f"nofile={NOFILE}:{NOFILE}", "--ulimit", f"nproc={nproc}:{nproc}",
                "--hostname", spec.instance, "--workdir", process.cwd, *user, *env,
                "--entrypoint", json.dumps([process.argv[0]]), image_id, *process.argv[1:]]
        with instance_log(spec, "podman", "cannot start podman") as stdio:
            times = Timestamps(t_launch=now_ns())
            inst = PodmanInstance(spec, times, self, pidfile, stdio)
            with launching(inst, "cannot start podman"):
                inst._posix_spawn(argv)
        return inst

    def close(self) -> None:
        if self._holder is not None:
            self._holder.close()
            self._holder = None

    def metadata(self) -> dict[str, Any]:
        version = None
        if self.exe is not None:
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                version = subprocess.run([self.exe, "--version"], capture_output=True, text=True,
                                         timeout=10, check=False).stdout.strip()
        return {"version": version, "runtime": self.crun, "storage": str(storage_root()), "network": "none",
                "cgroups": "disabled (no limits: startup only)", "images": dict(self._pulled),
                "ulimits": f"nofile={NOFILE}:{NOFILE}, nproc = podman's own (at most {PODMAN_NPROC})",
                "security": "podman's defaults (its seccomp profile and capabilities)"}


def cleanup_leftovers(run_id: str | None = None) -> list[str]:
    """Remove leftover isobench containers from isobench's podman storage (of ``run_id``)."""
    backend = PodmanBackend()
    if backend.available() is not None or not storage_root().exists():
        return []
    prefix = f"{PREFIX}-{run_id}-" if run_id else f"{PREFIX}-"
    try:
        names = backend.podman("ps", "--all", "--format", "{{.Names}}").stdout.split()
        removed = []
        for name in names:
            if name.startswith(prefix):
                backend.podman("rm", "--force", "--ignore", name)
                removed.append(f"podman container {name}")
        return removed
    finally:
        backend.close()


DECLARATION = Declaration(
    name="podman",
    factory="runtimes.podman:PodmanBackend",
    label="podman run (crun) on the same image: the whole image -> overlay -> runtime path",
    colour="#882255",
    peer_of="container",
    optional=True,  # a run without podman goes on, saying why
    sweep="runtimes.podman:cleanup_leftovers",
    packages={"podman": "/usr/bin/podman"},
)
