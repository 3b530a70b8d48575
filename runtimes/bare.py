"""The ``bare`` backend: fork/exec of the workload on the host, the reference point.

With limits (or ``extra["cgroup"]``) the child places itself into a fresh
cgroup below the harness's own before it execs, so nothing it forks escapes.
With ``extra["netns"]`` (a network namespace's path: the throughput measurement's
server side, ``runtimes.netlab``) it runs in that namespace instead of the host's,
entered by nsenter(1), which execs the workload (no process in between).

An image workload runs in the image's merged tree, mounted read-only once per run
(``runtimes.image.rundir.Tree``, before any ``t_launch``) and entered with **chroot only**:
``unshare(1) --root=TREE --wd=WORKDIR`` with no namespace option is a chroot, a chdir and
the image user's setgid/setuid (supplementary groups dropped), then the exec; no namespaces,
no limits beyond the measurement cgroup, no writable layer (writes to the root fail).
"""

from __future__ import annotations

import os
import shutil
from typing import Any

from runtimes.base import Backend, BackendError, Instance, LaunchSpec, Timestamps, now_ns
from runtimes.cgroups import Cgroup
from runtimes.declaration import Declaration
from runtimes.image.rundir import Runs, Tree
from runtimes.image.workload import ImageWorkload
from runtimes.process import ProcessInstance, instance_log, launching
from runtimes.workloads import BUSYBOX


class BareBackend(Backend):
    name = "bare"
    #: unshare(1)'s namespace options around an image's chroot (none: chroot only)
    namespace_args: tuple[str, ...] = ()
    #: the instances have a network namespace of their own (``ProcessInstance.own_netns``)
    own_netns = False

    def __init__(self) -> None:
        # looked up once: a PATH search between t_launch and t_ready would be timed
        self.unshare = shutil.which("unshare")
        #: (run id, image digest) -> the image's read-only tree, mounted for this run
        self._trees: dict[tuple[str, str], Tree] = {}
        self._runs = Runs()

    def available(self) -> str | None:
        if not os.path.exists(BUSYBOX):
            return f"{BUSYBOX} missing (fix: apt-get install busybox-static)"
        return None

    def launch(self, spec: LaunchSpec) -> Instance:
        argv = self._argv(spec)  # an image's tree is mounted here, before t_launch
        netns = spec.extra.get("netns")
        if netns:  # a backend that makes its own network namespace (unshare) makes it inside this one
            argv = [shutil.which("nsenter") or "nsenter", f"--net={netns}", "--", *argv]
        what = f"cannot start {spec.workload.name}"
        with instance_log(spec, "bare", what) as stdio:  # before t_launch, as for every backend
            times = Timestamps(t_launch=now_ns())
            cgroup = None
            if spec.limits.any() or spec.extra.get("cgroup"):
                cgroup = Cgroup.create(spec.instance, spec.limits)
                times.phases["cgroup_create"] = times.since_launch()
            inst = ProcessInstance(spec, cgroup, times, stdio)
            inst.own_netns = self.own_netns
            # unshare(1) leaves lo down (the readiness probe brings it up) and forks the workload
            inst.lo_down = inst.forks = self.own_netns
            with launching(inst, what):
                inst._spawn(argv)
        return inst

    def _argv(self, spec: LaunchSpec) -> list[str]:
        process = spec.workload.process
        if process is None or spec.extra.get("argv"):
            return self.command(list(spec.extra.get("argv") or spec.workload.argv()))
        if self.unshare is None:
            raise BackendError("unshare(1) not found: an image's tree is entered with it (fix: apt-get install "
                               "util-linux)")
        tree = self.tree(spec)
        user = ["--setgid", str(process.gid), "--setuid", str(process.uid)]
        return [self.unshare, *self.namespace_args, f"--root={tree.root}", f"--wd={process.cwd}", *user, "--",
                *process.argv]

    def tree(self, spec: LaunchSpec) -> Tree:
        """The image's read-only tree for this run (mounted on first use)."""
        workload = spec.workload
        assert isinstance(workload, ImageWorkload)
        image = workload.image
        key = (spec.run_id, image.digest)
        if key not in self._trees:
            self._runs.enter(spec.run_id)
            try:
                self._trees[key] = Tree(spec.run_id, image, workload.missing_mountpoints(),
                                        self.name.replace(":", "-"))
            except (OSError, ValueError) as e:
                raise BackendError(f"cannot mount the tree of image {image.name}: {e}") from e
        return self._trees[key]

    def command(self, argv: list[str]) -> list[str]:
        """The host command line that runs ``argv`` (a wrapper such as unshare(1) prefixes it)."""
        return argv

    def close(self) -> None:
        """Unmount the images' trees (after the run's instances are gone)."""
        while self._trees:
            self._trees.popitem()[1].close()
        self._runs.release()

    def metadata(self) -> dict[str, Any]:
        meta: dict[str, Any] = {"busybox": os.path.realpath(BUSYBOX)}
        if self._trees:
            meta["image_root"] = ("the image's merged tree, read-only overlay on the host, entered with unshare(1) "
                                  f"--root/--wd {' '.join(self.namespace_args) or '(no namespaces: chroot only)'}")
        return meta


DECLARATION = Declaration(
    name="bare",
    factory="runtimes.bare:BareBackend",
    label="fork/exec on the host",
    in_words="bare metal",
    colour="#555555",
    reference=True,
    image_label="chroot",
)
