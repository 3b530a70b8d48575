"""Host setup for the ``vm`` backend: libvirt's configuration, its daemons, the guest kernel.

``isobench doctor --fix`` and ``.ci/run`` (through ``python -m runtimes.vm.host
--setup``) call these; each step is idempotent and returns what it did, in words.

No systemd is assumed: the daemons are started by hand (``virtlogd -d`` first,
since libvirt refuses to start a domain without its log daemon, then libvirtd,
detached, under ``reaper.py`` so that its QEMU processes are reaped at once).
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

from runtimes import cgroups
from runtimes.vm import reaper
from runtimes.vm.uri import uri
from runtimes.wait import wait_until

QEMU_CONF = Path("/etc/libvirt/qemu.conf")
VIRTLOGD_SOCK = "/run/libvirt/virtlogd-sock"
LIBVIRTD_SOCK = "/run/libvirt/libvirt-sock"
#: libvirt's default list (qemu.conf) without "memory", see ``configure_libvirt``
CONTROLLERS_WITHOUT_MEMORY = ("cpu", "devices", "blkio", "cpuset", "cpuacct")
_MARK = "# set by isobench (runtimes/vm/host.py):"
_CONTROLLERS_RE = re.compile(r"^\s*cgroup_controllers\s*=\s*\[(?P<list>[^\]]*)\]", re.M)


# -- cgroup placement -------------------------------------------------------------------


def _own_cgroup(controller: str, text: str | None = None) -> tuple[int, str] | None:
    """(hierarchy version, path) of this process in ``controller``'s hierarchy."""
    text = text if text is not None else Path("/proc/self/cgroup").read_text()
    paths = cgroups.paths_by_controller(cgroups.parse_proc_cgroup(text))
    if controller in paths:
        return 1, paths[controller]
    return (2, paths[""]) if "" in paths else None


def memory_controller_needs_excluding(proc_self_cgroup: str | None = None) -> bool:
    """Whether libvirt must be kept away from the memory controller on this host.

    Without systemd, libvirt puts every guest's QEMU into ``machine/`` at the
    *root* of each v1 hierarchy it manages.  When this process sits in a
    delegated memory sub-tree (a CI sandbox, a systemd slice), that would move
    QEMU out of the sub-tree we own and account memory outside it; dropping
    "memory" from ``cgroup_controllers`` leaves QEMU where libvirtd started it.
    It is only possible (and only needed) with a *v1* memory hierarchy: on a
    unified (v2) host the controllers share one tree, so the list cannot keep
    QEMU in place, and when our memory cgroup is the root nothing is escaped.
    """
    own = _own_cgroup("memory", proc_self_cgroup)
    return own is not None and own[0] == 1 and own[1] != "/"


def rewrite_controllers(conf: str) -> str:
    """``qemu.conf`` text with a ``cgroup_controllers`` setting that leaves out "memory"."""
    wanted = ", ".join(f'"{c}"' for c in CONTROLLERS_WITHOUT_MEMORY)
    m = _CONTROLLERS_RE.search(conf)
    if m is not None:
        current = [c.strip().strip('"') for c in m.group("list").split(",") if c.strip()]
        if "memory" not in current:
            return conf
        kept = ", ".join(f'"{c}"' for c in current if c != "memory")
        return conf[: m.start()] + f"cgroup_controllers = [ {kept} ]" + conf[m.end():]
    tail = "" if conf.endswith("\n") or not conf else "\n"
    return (conf + tail + f"\n{_MARK} keep QEMU inside the caller's memory cgroup\n"
            f"cgroup_controllers = [ {wanted} ]\n")


def configure_libvirt(conf_path: Path = QEMU_CONF) -> list[str]:
    """Set ``cgroup_controllers`` without "memory" where needed; idempotent; returns actions."""
    if not memory_controller_needs_excluding():
        return []
    try:
        text = conf_path.read_text()
    except FileNotFoundError:
        return [f"{conf_path} missing (fix: apt-get install libvirt-daemon-system)"]
    new = rewrite_controllers(text)
    if new == text:
        return []
    conf_path.write_text(new)
    actions = [f"{conf_path}: cgroup_controllers without \"memory\" (QEMU stays in our memory cgroup)"]
    if daemon_running("libvirtd"):
        actions.append("libvirtd is already running: restart it for the new cgroup_controllers to apply")
    return actions


def controllers_configured(conf_path: Path = QEMU_CONF) -> bool:
    try:
        return rewrite_controllers(conf_path.read_text()) == conf_path.read_text()
    except OSError:
        return False


# -- daemons ----------------------------------------------------------------------------


def _socket_answers(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        try:
            s.connect(path)
        except OSError:
            return False
    return True


def daemon_running(name: str) -> bool:
    sock = {"virtlogd": VIRTLOGD_SOCK, "libvirtd": LIBVIRTD_SOCK}[name]
    return _socket_answers(sock)


def _virsh_answers(connect_uri: str) -> bool:
    try:
        return subprocess.run(["virsh", "-c", connect_uri, "version"], capture_output=True,
                              timeout=10, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def start_daemons(timeout: float = 30.0, connect_uri: str | None = None) -> list[str]:
    """Start virtlogd and libvirtd when they are not running; wait until libvirt answers."""
    connect_uri = connect_uri or uri()
    actions: list[str] = []
    if daemon_running("virtlogd") and _virsh_answers(connect_uri):
        return actions
    if Path("/run/systemd/system").exists():
        # a systemd host: its units (or socket activation) are the way to start them
        for unit in ("virtlogd.socket", "libvirtd.service"):
            if subprocess.run(["systemctl", "start", unit], capture_output=True, check=False).returncode == 0:
                actions.append(f"systemctl start {unit}")
    for daemon in ("virtlogd", "libvirtd"):
        if daemon_running(daemon):
            continue
        exe = shutil.which(daemon) or f"/usr/sbin/{daemon}"
        if not os.path.exists(exe):
            raise RuntimeError(f"{daemon} not found (fix: apt-get install libvirt-daemon-system)")
        if daemon == "libvirtd":
            # in the foreground under our reaper, which detaches itself: see reaper.py
            cmd = [sys.executable, reaper.__file__, "--detach", exe]
            what = f"started {daemon} (under runtimes/vm/reaper.py, which reaps its QEMUs)"
        else:
            cmd, what = [exe, "-d"], f"started {daemon} -d"
        subprocess.run(cmd, check=True, stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        actions.append(what)
        if not wait_until(functools.partial(daemon_running, daemon), timeout, interval=0.1):
            raise RuntimeError(f"{daemon} started but its socket does not answer after {timeout:g} s")
    if not wait_until(lambda: _virsh_answers(connect_uri), timeout, interval=0.2):
        raise RuntimeError(f"`virsh -c {connect_uri} version` does not answer after {timeout:g} s")
    return actions


def libvirt_status(connect_uri: str | None = None) -> str | None:
    """None when libvirt can run our guests, else the reason and the fix, on one line."""
    connect_uri = connect_uri or uri()
    fix = "fix: isobench doctor --fix, or python -m runtimes.vm.host --setup"
    try:
        import libvirt
    except ImportError:
        return "libvirt-python is not installed (fix: pip install libvirt-python; apt-get install libvirt-dev)"
    local = connect_uri.startswith("qemu:///")
    if local and not daemon_running("virtlogd"):
        return f"virtlogd is not running, libvirt cannot start domains without it ({fix})"
    from runtimes.vm.connection import ensure_event_loop

    ensure_event_loop()  # before the process's first connection, or events never come
    try:
        conn = libvirt.open(connect_uri)
    except libvirt.libvirtError as e:
        return f"libvirt at {connect_uri} does not answer: {str(e).splitlines()[0]} ({fix})"
    try:
        conn.getVersion()
    finally:
        conn.close()
    if local and memory_controller_needs_excluding() and not controllers_configured():
        return (f"{QEMU_CONF} lets libvirt move QEMU out of this process's memory cgroup "
                f"(cgroup_controllers includes \"memory\"; {fix}, then restart libvirtd)")
    return None


# -- guest kernel -----------------------------------------------------------------------


def _version_key(path: str) -> list[tuple[int, object]]:
    parts = re.split(r"[.-]", os.path.basename(path).removeprefix("vmlinuz-"))
    return [(0, int(p)) if p.isdigit() else (1, p) for p in parts]


def find_kernel() -> str | None:
    """The guest kernel: ``$ISOBENCH_VM_KERNEL``, else the newest ``/boot/vmlinuz-*``."""
    forced = os.environ.get("ISOBENCH_VM_KERNEL")
    if forced:
        return forced if os.path.isfile(forced) else None
    found = [str(p) for p in Path("/boot").glob("vmlinuz-*") if p.is_file()]
    return max(found, key=_version_key) if found else None


def kernel_config(kernel: str) -> Path | None:
    """The ``/boot/config-<version>`` beside a distro kernel, when there is one."""
    p = Path(kernel)
    cfg = p.with_name(p.name.replace("vmlinuz-", "config-", 1))
    return cfg if cfg != p and cfg.exists() else None


def qemu_binary() -> str | None:
    for name in ("qemu-system-x86_64", "kvm"):
        path = shutil.which(name)
        if path:
            return path
    return None


def qemu_version() -> str | None:
    exe = qemu_binary()
    if exe is None:
        return None
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=False).stdout
    m = re.search(r"version (\S+)", out)
    return m.group(1) if m else None


def setup() -> list[str]:
    """Everything the host needs for the vm backend: configuration first, then the daemons."""
    return configure_libvirt() + start_daemons()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m runtimes.vm.host", description=__doc__.splitlines()[0])
    ap.add_argument("--setup", action="store_true", help="configure libvirt and start its daemons")
    args = ap.parse_args(argv)
    if args.setup:
        try:
            for action in setup():
                print(action)
        except (RuntimeError, subprocess.CalledProcessError) as e:
            print(f"isobench: vm host setup failed: {e}", file=sys.stderr)
            return 1
    problem = libvirt_status()
    print(f"libvirt ({uri()}): {problem or 'ok'}")
    print(f"guest kernel: {find_kernel() or 'none found (fix: apt-get install linux-image-amd64)'}")
    return 0 if problem is None else 1


if __name__ == "__main__":
    sys.exit(main())
