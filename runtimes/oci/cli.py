"""How each OCI runtime is driven from its command line: runc and crun alike, runsc its own way.

The backend (``runtimes.oci.backend``) writes the same bundle for every runtime
and asks a :class:`Cli` for what differs: the command lines (``run``,
``delete``), the descriptor the marker pipe goes on, the workload's argv as the
bundle carries it, how a container's state shows in the state root, and which
host process's exit is the container's.  runc and crun are this class (crun
with the hybrid cgroup2 mount hidden); gVisor's runsc is
``runtimes.oci.runsc.Runsc``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from runtimes.workloads import MARKER_FD


def find_runtime(runtime: str) -> str | None:
    """The runtime binary: on PATH, else where Debian puts it (runc in /usr/sbin)."""
    found = shutil.which(runtime)
    if found:
        return found
    for d in ("/usr/sbin", "/usr/bin", "/usr/local/bin", "/usr/local/sbin"):
        if os.access(f"{d}/{runtime}", os.X_OK):
            return f"{d}/{runtime}"
    return None


def runtime_version(exe: str) -> str | None:
    """``runc version 1.1.5`` (``runsc version 0.0~20221219.0``) -> the version."""
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=10, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"version\s+(\S+)", out)
    return m.group(1) if m else None


class Cli:
    """runc's and crun's command line: ``run --preserve-fds 1`` hands fd 3 on to the workload."""

    #: the runtime's descriptor the marker pipe's write end goes on
    marker_fd = MARKER_FD
    #: the runtime's view hides a hybrid host's cgroup2 mount (crun 1.8.1 refuses such hosts)
    hide_cgroup2 = False
    #: how the runtime is started, for the manifest
    launch_words = "run --preserve-fds 1 (foreground)"
    #: the host process whose kernel exit event is ``t_exit``
    exit_words = "the container's process"
    #: the platform it runs the workload on, recorded as the rows' ``accel`` (None: no choice)
    platform: str | None = None
    #: it binds ``root.path`` anew and remounts that bind with no flags, so an image root's
    #: ``nosuid,nodev`` are lost unless a hook remounts it with them (``bundle.root_flags_hook``);
    #: runc's bind keeps the overlay's flags
    drops_root_flags = False

    def __init__(self, runtime: str, exe: str, state_root: Path):
        self.runtime = runtime
        self.exe = exe
        self.state_root = state_root

    def command(self, *args: str) -> list[str]:
        """The runtime with its global flags, then ``args`` (a subcommand and its own flags)."""
        return [self.exe, "--root", str(self.state_root), *args]

    def run(self, bundle_dir: Path, name: str, marker: bool = True) -> list[str]:
        """``marker`` False: an image's process, which gets no fd 3 (nothing is preserved)."""
        return self.command("run", "--preserve-fds", "1" if marker else "0", "-b", str(bundle_dir), name)

    def delete(self, name: str) -> list[str]:
        return self.command("delete", "--force", name)

    def argv(self, argv: list[str]) -> list[str]:
        """The workload's argv as the bundle carries it (as given: fd 3 reaches it)."""
        return argv

    def names(self) -> set[str]:
        """The containers the state root holds state of."""
        try:
            return {p.name for p in self.state_root.iterdir()}
        except FileNotFoundError:
            return set()

    def state(self, name: str) -> list[Path]:
        """What the state root holds of container ``name`` (nothing once it is deleted)."""
        p = self.state_root / name
        return [p] if p.exists() else []

    def sandbox_pid(self, bundle_dir: Path) -> int | None:
        """The host process whose exit is the container's, when it is not the runtime's last child."""
        return None

    def metadata(self) -> dict[str, Any]:
        return {"launch": self.launch_words}


class Crun(Cli):
    hide_cgroup2 = True
    drops_root_flags = True  # crun 1.8: mount(NULL, root, NULL, MS_REMOUNT | MS_BIND, NULL)

    def metadata(self) -> dict[str, Any]:
        return {**super().metadata(), "image_root": "remounted nosuid,nodev by a createContainer hook "
                                                    "(sh + mount, inside the launch: crun drops the flags)"}
