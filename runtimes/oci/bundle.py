"""The OCI bundle (``config.json``) that asks runc/crun for what the built-in container does.

Generated here, not by ``runc spec``: the same namespaces
(``runtimes.container.namespaces.DEFAULT``), the same mounts, masked and
read-only /proc paths (``runtimes.container.mounts.plan``), the same
capabilities (``runtimes.container.security.caps.OCI_DEFAULT``), the same seccomp filter
(``runtimes.container.security.seccomp``: the resolved profile the built-in container
compiles), the same device rules (``runtimes.container.devices``), rlimits and
oom_score_adj (``runtimes.container.security.hardening``) and the same limits as
``runtimes.cgroups.Cgroup.apply`` writes (CFS quota/period, a memory limit with
no swap beyond it, a pids limit).  The root is the shared workload rootfs
itself, ``readonly``: the runtimes bind it read-only and never write into it,
provided every mount destination already exists there (they do: the rootfs
builder makes the mountpoints; /dev/shm lives inside the /dev tmpfs).

Pure functions only; writing and removing the bundle directory is at the end.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from runtimes import syscalls as sc
from runtimes.base import PREFIX, LaunchSpec, Limits
from runtimes.container import mounts as container_mounts
from runtimes.container import namespaces as container_namespaces
from runtimes.container.devices import rules as container_devices
from runtimes.container.security import caps as container_caps
from runtimes.container.security import hardening as container_hardening

OCI_VERSION = "1.0.2"
#: /proc/<pid>/ns names (the built-in container's vocabulary) -> OCI namespace types
OCI_NAMESPACE = {"pid": "pid", "mnt": "mount", "uts": "uts", "ipc": "ipc", "net": "network",
                 "cgroup": "cgroup", "user": "user", "time": "time"}
#: what the workload sees in its environment (the container's init sets the same)
ENV = ("PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root")
#: mount(2) flag bits -> OCI mount option words
_FLAG_WORDS = ((sc.MS_RDONLY, "ro"), (sc.MS_NOSUID, "nosuid"), (sc.MS_NODEV, "nodev"),
               (sc.MS_NOEXEC, "noexec"))


def namespaces(kinds: Sequence[str] = container_namespaces.DEFAULT) -> list[dict[str, str]]:
    """The container's namespace kinds as OCI ``linux.namespaces`` (all fresh: no ``path``)."""
    unknown = [k for k in kinds if k not in OCI_NAMESPACE]
    if unknown:
        raise ValueError(f"no OCI namespace type for {', '.join(unknown)}")
    return [{"type": OCI_NAMESPACE[k]} for k in kinds]


def resources(limits: Limits, *, cgroup_version: int, memsw: bool,
              devices: Sequence[container_devices.Rule] | None = container_devices.DEFAULT_RULES) -> dict[str, Any]:
    """``linux.resources`` asking for exactly what ``Cgroup.apply(limits)`` writes.

    OCI's ``memory.swap`` is memory+swap (v1 ``memory.memsw.limit_in_bytes``;
    runc/crun write ``memory.swap.max = swap - limit`` on v2), so swap = limit
    means "no swap beyond the limit".  It is only asked for where the host has
    swap accounting (``memsw``), as ``Cgroup.apply`` does: runtimes fail on a
    swap limit the kernel cannot set.  v1 also gets swappiness 0, as ours.
    """
    res: dict[str, Any] = {}
    if devices is not None:
        res["devices"] = container_devices.oci_rules(tuple(devices))
    if limits.cpu_quota is not None:
        res["cpu"] = {"quota": limits.cpu_quota_us, "period": limits.cpu_period_us}
    if limits.cpu_shares is not None:  # OCI shares are v1's; runc/crun convert them to cpu.weight on v2
        res.setdefault("cpu", {})["shares"] = limits.cpu_shares
    if limits.memory_mib is not None:
        limit = limits.memory_mib << 20
        mem: dict[str, Any] = {"limit": limit}
        if memsw:
            mem["swap"] = limit
        if cgroup_version == 1:
            mem["swappiness"] = 0
        res["memory"] = mem
    if limits.pids is not None:
        res["pids"] = {"limit": limits.pids}
    return res


def _options(flags: int, extra: Iterable[str] = ()) -> list[str]:
    return [word for bit, word in _FLAG_WORDS if flags & bit] + list(extra)


def mount_plan(rootfs: str | os.PathLike[str], image: bool = False, volume: str | None = None) -> dict[str, Any]:
    """The built-in container's mount plan translated to OCI terms (``image``: an image
    instance's, whose root is its own writable overlay: no /tmp tmpfs, not read-only;
    ``volume``: a host directory bind-mounted at /mnt, ``mounts.plan``).

    Returns ``mounts``, ``maskedPaths``, ``readonlyPaths`` and ``readonly`` (root).
    Operations the runtimes do by themselves are not listed: the root bind and
    pivot_root, the default device nodes (null zero full random urandom tty, the
    same six ``mounts.DEVICES`` nodes) and the /dev symlinks (fd, stdin...).  /proc
    comes first, as in ``runc spec`` (our plan builds /dev first, for its masks' sake).  An
    image's root (``mounts.ImageRoot``) is the bundle's ``root.path``, mounted before the
    runtime runs.
    """
    root = os.fspath(rootfs)
    ops = container_mounts.image_plan(root, "") if image else container_mounts.plan(root, volume=volume)

    def inside(path: str) -> str:
        rel = os.path.relpath(path, root)
        return "/" if rel == "." else "/" + rel

    out: dict[str, Any] = {"mounts": [], "maskedPaths": [], "readonlyPaths": [], "readonly": False}
    for op in ops:
        if isinstance(op, container_mounts.Proc):
            out["mounts"].append({"destination": inside(op.dst), "type": "proc", "source": "proc",
                                  "options": _options(sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC)})
        elif isinstance(op, container_mounts.Tmpfs):
            data = [f"mode={op.mode:o}"] + ([f"size={op.size}"] if op.size else [])
            flags = op.flags
            if inside(op.dst) == "/dev":
                # runc/crun mknod the default nodes into /dev, as we do: nodev there would make
                # them unusable; the device cgroup rules, the same as ours, are what stops a
                # workload's own nodes there
                flags &= ~sc.MS_NODEV
            out["mounts"].append({"destination": inside(op.dst), "type": "tmpfs", "source": "tmpfs",
                                  "options": _options(flags, data)})
        elif isinstance(op, container_mounts.Bind) and op.dst != root:  # a volume
            out["mounts"].append({"destination": inside(op.dst), "type": "bind", "source": op.src,
                                  "options": ["rbind", "ro" if op.readonly else "rw", *_options(op.flags)]})
        elif isinstance(op, container_mounts.Mask):
            out["maskedPaths"].append(inside(op.dst))
        elif isinstance(op, container_mounts.ReadOnly):
            out["readonlyPaths"].append(inside(op.dst))
        elif isinstance(op, container_mounts.Remount) and op.dst == root and op.flags & sc.MS_RDONLY:
            out["readonly"] = True
    out["mounts"].sort(key=lambda m: m["destination"] != "/proc")  # stable: the rest keep their order
    return out


def capabilities(names: Sequence[str] = container_caps.OCI_DEFAULT) -> dict[str, list[str]]:
    caps = [f"CAP_{n}" for n in names]
    return {"bounding": caps, "effective": caps, "permitted": caps}


def root_flags_hook(rootfs: str | os.PathLike[str], sh: str, mount: str) -> dict[str, Any]:
    """A ``createContainer`` hook that remounts an image root ``nosuid,nodev`` (its overlay's
    flags) in the container's mount namespace before ``pivot_root``: for a runtime that binds
    ``root.path`` anew without them (crun 1.8).  The hook reads the state the runtime writes
    on its stdin first (a hook gone before the write fails the start: EPIPE)."""
    script = 'while read -r _; do :; done; exec "$1" -o remount,bind,nosuid,nodev "$2"'
    return {"path": sh, "args": ["sh", "-c", script, f"{PREFIX}-root-flags", mount, os.fspath(rootfs)]}


def config(spec: LaunchSpec, rootfs: str | os.PathLike[str], cgroups_path: str, *,
           cgroup_version: int, memsw: bool, seccomp: Mapping[str, Any] | None = None,
           wrap_argv: Callable[[list[str]], list[str]] | None = None,
           hooks: Mapping[str, list[dict[str, Any]]] | None = None) -> dict[str, Any]:
    """The whole ``config.json`` for one instance; ``seccomp`` is OCI ``linux.seccomp``
    (``seccomp.Filter.oci``), None for unconfined; ``wrap_argv`` changes the workload's
    argv as a runtime needs it (runsc: the marker descriptor, ``runtimes.oci.runsc``);
    ``hooks``: OCI ``hooks`` (``root_flags_hook``)."""
    if PREFIX not in spec.instance:
        raise ValueError(f"instance name {spec.instance!r} must contain {PREFIX!r}")
    if not cgroups_path.startswith("/"):
        raise ValueError(f"cgroupsPath must be absolute, got {cgroups_path!r}")
    process = spec.workload.process  # an image's (None: a catalog workload)
    plan = mount_plan(rootfs, image=process is not None, volume=spec.extra.get("volume"))
    argv = list(spec.extra.get("argv") or (process.argv if process is not None else spec.workload.argv()))
    if wrap_argv is not None and process is None:  # (the marker's descriptor: a catalog workload's)
        argv = wrap_argv(argv)
    linux: dict[str, Any] = {
        "namespaces": namespaces(),
        "cgroupsPath": cgroups_path,
        "resources": resources(spec.limits, cgroup_version=cgroup_version, memsw=memsw),
        "rootfsPropagation": "rprivate",
        "maskedPaths": plan["maskedPaths"],
        "readonlyPaths": plan["readonlyPaths"],
    }
    if seccomp is not None:
        linux["seccomp"] = dict(seccomp)
    return {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": argv,
            "env": list(ENV),
            "cwd": "/",
            "capabilities": capabilities(),
            **(_image_process(spec) if process is not None else {}),
            "noNewPrivileges": True,
            "rlimits": container_hardening.oci_rlimits(),
            "oomScoreAdj": container_hardening.OOM_SCORE_ADJ,
        },
        "root": {"path": os.fspath(rootfs), "readonly": plan["readonly"]},
        "hostname": spec.instance,
        "mounts": plan["mounts"],
        "linux": linux,
        **({"hooks": {k: list(v) for k, v in hooks.items()}} if hooks else {}),
    }


def _image_process(spec: LaunchSpec) -> dict[str, Any]:
    """``process`` fields of an image's process: its user, environment and working directory, as
    the built-in container runs it.  A non-root user keeps the bounding set but no effective or
    permitted capability: what setuid leaves the built-in container's workload."""
    p = spec.workload.process
    assert p is not None
    user: dict[str, Any] = {"uid": p.uid, "gid": p.gid}
    if p.groups:
        user["additionalGids"] = list(p.groups)
    caps = capabilities()
    if p.uid != 0:
        caps = {"bounding": caps["bounding"], "effective": [], "permitted": []}
    env = {**p.env, "HOSTNAME": spec.instance}
    return {"user": user, "env": [f"{k}={v}" for k, v in env.items()], "cwd": p.cwd, "capabilities": caps}


def write(bundle_dir: Path, cfg: dict[str, Any]) -> Path:
    """Create the bundle directory (it must not exist) with its ``config.json``."""
    bundle_dir.mkdir(mode=0o700)
    path = bundle_dir / "config.json"
    try:
        path.write_text(json.dumps(cfg))
    except BaseException:
        remove(bundle_dir)  # what this call made: nothing half-written stays behind
        raise
    return path


def remove(bundle_dir: Path) -> None:
    """Remove a bundle directory; it only ever holds config.json (the root is elsewhere)."""
    shutil.rmtree(bundle_dir, ignore_errors=True)
