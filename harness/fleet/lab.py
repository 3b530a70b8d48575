"""A fleet on this machine: virtme-ng guests serving SSH on 127.0.0.1, written as an inventory.

Each guest boots a kernel over this machine's own filesystem (``harness.matrix.guest``:
one PID namespace per guest, killed with us) and runs ``sshd`` as its only job.
Its network is QEMU's user-mode stack with ``restrict=on``, so the guest reaches
nothing outside QEMU, and one ``hostfwd`` from ``127.0.0.1:PORT`` to the guest's
port 22: the only address a controller ever uses for it.  The lab owns a private
directory (``/tmp/isobench-fleetlab-PID-…``) with a client key, a host key, the
matching ``known_hosts`` and ``sshd_config``; keys are made here, so host-key
checking stays on.  ``stop()`` powers every guest off and removes the directory.

Root's login shell inside a guest is switched to ``/bin/sh`` (in the guest's own
copy of /etc): this machine's bash profile starts pyenv, seconds per command
under emulation.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from harness.errors import UserError
from harness.matrix import guest, modes
from harness.matrix.kernels import Kernel
from runtimes import owners

BOOT_TIMEOUT_S = 300.0  # two TCG guests booting at once on a busy 2-core machine
LOOPBACK = "127.0.0.1"
GUEST_ADDR = "10.0.2.15"  # QEMU's user-mode default for the guest: never seen outside QEMU


@dataclass(frozen=True)
class GuestHost:
    """One lab guest, as the inventory names it."""

    name: str  # inventory host name, e.g. "guest-6.1"
    kernel: Kernel
    mode: str  # cgroup mode inside: v1 | v2
    accel: str
    accel_reason: str
    port: int
    cpus: int = 1
    memory_mib: int = 1024

    def facts(self) -> dict[str, Any]:
        """``isobench_guest``: what the fleet writes into this host's run manifest as ``guest``."""
        return {"kernel": self.kernel.release, "kernel_label": self.kernel.label, "kernel_source": self.kernel.source,
                "cgroup_mode": self.mode, "accel": self.accel, "accel_reason": self.accel_reason,
                "vcpus": self.cpus, "memory_mib": self.memory_mib, "launcher": "virtme-ng", "cell": self.name}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def sshd_config(directory: Path) -> str:
    return "\n".join([
        "ListenAddress 0.0.0.0:22", f"HostKey {directory / 'host_key'}",
        f"AuthorizedKeysFile {directory / 'client_key.pub'}", "PermitRootLogin prohibit-password",
        "PasswordAuthentication no", "KbdInteractiveAuthentication no",
        "UsePAM yes",  # root's password is locked; without PAM sshd refuses a locked account's keys too
        "StrictModes no", "UseDNS no", "PidFile none", "PrintMotd no",
        "Subsystem sftp /usr/lib/openssh/sftp-server", ""])


#: where a guest sees the module tree of a kernel fetched from Debian's archive (``--rodir``)
MODULES_MOUNT = "/run/isobench-kernel"


def module_tree(kernel: Kernel) -> Path | None:
    """The root of a kernel unpacked from Debian's archive (``<tree>/lib/modules/<release>``):
    its modules are not under /lib/modules, and /var/cache, where they are, is a tmpfs inside a
    virtme-ng guest; None for an installed kernel."""
    tree = kernel.image.parent.parent
    if tree == Path("/") or not (tree / "lib" / "modules" / kernel.release).is_dir():
        return None
    return tree


def modprobe(kernel: Kernel, module: str) -> str:
    """A shell line that loads ``module`` (virtio_net is a module in Debian's kernels)."""
    if module_tree(kernel) is None:
        return f"modprobe {module} 2>/dev/null\n"
    return f"modprobe -d {MODULES_MOUNT} {module} 2>/dev/null || modprobe {module} 2>/dev/null\n"


def boot_script(g: GuestHost, directory: Path) -> str:
    """The guest's only job: its cgroup mode, its network (loopback + the user-mode NIC), sshd."""
    return (modes.prelude(g.mode, scope=False) + modprobe(g.kernel, "virtio_net") +
            "rm -f /run/nologin\n"
            "sed -i 's#^\\(root:.*:\\)/bin/bash$#\\1/bin/sh#' /etc/passwd\n"
            "ip link set lo up\n"
            "i=0; while [ -z \"$(ls /sys/class/net | grep -vx lo)\" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done\n"
            "dev=$(ls /sys/class/net | grep -vx lo | head -n1)\n"
            f'ip link set "$dev" up && ip addr add {GUEST_ADDR}/24 dev "$dev"\n'
            "mkdir -p /run/sshd && chmod 0755 /run/sshd\n"
            f"exec /usr/sbin/sshd -D -e -f {shlex.quote(str(directory / 'sshd_config'))}\n")


def cached_paths() -> tuple[str, ...]:
    """The matrix's read-mostly paths, plus this Python's own standard library (pyenv, /opt …)."""
    from harness.matrix.intests import cached_paths as matrix_paths

    paths = list(matrix_paths())
    if not sys.base_prefix.startswith("/usr"):
        paths.append(sys.base_prefix)
    return tuple(paths)


class Lab:
    """Owns its guests and its directory: ``with Lab(...) as lab: lab.boot_all(); …``."""

    def __init__(self, guests: list[GuestHost], local: bool = True, keep_logs: Path | None = None):
        """``keep_logs``: a directory the guests' console logs are copied to when the lab stops
        (a test keeps them beside its results, to read after a failure)."""
        self.guests = {g.name: g for g in guests}
        self.local = local
        self.keep_logs = keep_logs
        self.running: dict[str, guest.Running] = {}
        self.dir = Path(tempfile.mkdtemp(prefix=f"isobench-fleetlab-{os.getpid()}-"))

    @property
    def run_id(self) -> str:
        """What the lab's guests are named after (``isobench-guest-fleetlab-<pid>-…``), claimed as a
        live run's (``runtimes.owners``) while the lab lives: anyone's ``isobench cleanup`` spares
        them (its QEMU sweep takes every unowned ``isobench-…`` guest for a leftover)."""
        return f"guest-fleetlab-{os.getpid()}"

    def __enter__(self) -> Lab:
        try:
            owners.claim(self.run_id)
            self._keys()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _keys(self) -> None:
        for key in ("client_key", "host_key"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"isobench-fleetlab-{key}",
                            "-f", str(self.dir / key)], check=True, capture_output=True)
        (self.dir / "sshd_config").write_text(sshd_config(self.dir))
        host_pub = (self.dir / "host_key.pub").read_text().split()[:2]
        (self.dir / "known_hosts").write_text("".join(
            f"[{LOOPBACK}]:{g.port} {' '.join(host_pub)}\n" for g in self.guests.values()))

    def start(self, name: str) -> None:
        g = self.guests[name]
        tree = module_tree(g.kernel)
        if tree is not None:  # vng takes only [a-zA-Z0-9_+ /.-] in a share's path; Debian's have '~'
            link = self.dir / f"modules-{name}"
            link.unlink(missing_ok=True)
            link.symlink_to(tree)
            tree = link
        spec = guest.Guest(g.kernel.image, accel=g.accel, cpus=g.cpus, memory_mib=g.memory_mib,
                           cached_paths=cached_paths(), ro_dirs=((MODULES_MOUNT, tree),) if tree else (),
                           qemu_opts=(f"-netdev user,id=isobench,restrict=on,hostfwd=tcp:{LOOPBACK}:{g.port}-:22 "
                                      "-device virtio-net-pci,netdev=isobench",))
        # the index keeps one guest's name from being part of another's ("…-guest-6.1" in
        # "…-guest-6.12"): stopping a guest waits until no process carries its name
        index = list(self.guests).index(name)
        # guest.start puts GUEST_PREFIX (isobench-guest-) before it: isobench-<run id>-<index>-<name>
        self.running[name] = guest.start(spec, boot_script(g, self.dir),
                                         name=f"{self.run_id.removeprefix('guest-')}-{index}-{name}",
                                         log=self.dir / f"{name}.console.log")

    def wait_ssh(self, name: str, timeout_s: float = BOOT_TIMEOUT_S) -> float:
        """Seconds until ``name`` accepted an SSH login; a ``UserError`` with its console's end if never."""
        r, g = self.running[name], self.guests[name]
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if r.wait(0) is not None:
                raise UserError(f"fleet lab: guest {name} stopped while booting: {self._tail(name)}")
            if _banner(g.port) and self.ssh(name, "true").returncode == 0:
                return time.monotonic() - r.started
            time.sleep(1.0)
        raise UserError(f"fleet lab: guest {name} did not answer SSH within {timeout_s:g} s: {self._tail(name)}")

    def boot_all(self, timeout_s: float = BOOT_TIMEOUT_S) -> dict[str, float]:
        """Boot every guest at once; seconds each took to answer SSH."""
        for name in self.guests:
            self.start(name)
        with ThreadPoolExecutor(max_workers=max(1, len(self.guests))) as pool:
            waits = {n: pool.submit(self.wait_ssh, n, timeout_s) for n in self.guests}
            return {n: f.result() for n, f in waits.items()}

    def power_off(self, name: str) -> None:
        """Pull the plug: the guest's QEMU is killed at once, whatever it was doing."""
        r = self.running.pop(name, None)
        if r is not None:
            r.stop()

    def stop(self) -> None:
        import shutil

        for name in list(self.running):
            self.power_off(name)
        if self.keep_logs is not None:
            self.keep_logs.mkdir(parents=True, exist_ok=True)
            for log in self.dir.glob("*.console.log"):
                shutil.copyfile(log, self.keep_logs / log.name)
        shutil.rmtree(self.dir, ignore_errors=True)
        owners.release(self.run_id)

    def state(self, name: str) -> str:
        """A line on guest ``name``: up, or gone with its console's last words (for a failure message)."""
        r = self.running.get(name)
        if r is None:
            return f"{name}: powered off"
        status = r.wait(0)
        return f"{name}: up" if status is None else f"{name}: gone (exit {status}): {self._tail(name)}"

    def ssh(self, name: str, command: str, timeout_s: float = 60.0) -> subprocess.CompletedProcess[str]:
        """Run ``command`` in guest ``name`` over the lab's loopback SSH (tests check hosts with it)."""
        return subprocess.run(["ssh", *self.ssh_options(), "-i", str(self.dir / "client_key"),
                               "-p", str(self.guests[name].port),
                               f"root@{LOOPBACK}", command], capture_output=True, text=True,
                              timeout=timeout_s, check=False)

    def ssh_options(self) -> list[str]:
        return ["-o", "BatchMode=yes", "-o", f"UserKnownHostsFile={self.dir / 'known_hosts'}",
                "-o", "StrictHostKeyChecking=yes", "-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=20",
                "-o", "LogLevel=ERROR"]

    def inventory(self) -> dict[str, Any]:
        """The lab as an Ansible inventory (YAML; written as JSON, which YAML reads)."""
        py = sys.executable
        guests = {g.name: {"ansible_host": LOOPBACK, "ansible_port": g.port, "isobench_guest": g.facts()}
                  for g in self.guests.values()}
        ssh_args = " ".join(shlex.quote(o) for o in self.ssh_options())
        children: dict[str, Any] = {"lab_guests": {"hosts": guests, "vars": {
            "ansible_user": "root", "ansible_ssh_private_key_file": str(self.dir / "client_key"),
            "ansible_ssh_common_args": f"{ssh_args} -o ServerAliveInterval=5 -o ServerAliveCountMax=3",
            "ansible_python_interpreter": "/usr/bin/python3", "ansible_remote_tmp": "/tmp/.ansible-isobench",
            "isobench_python": py, "isobench_doctor_args": "--fix --no-probe"}}}
        if self.local:
            children["lab_local"] = {"hosts": {"local": {
                "ansible_connection": "local", "ansible_python_interpreter": py, "isobench_python": py,
                "isobench_doctor_args": "--fix --no-probe"}}}
        return {"all": {"children": children}}

    def write_inventory(self, path: Path) -> Path:
        path.write_text(json.dumps(self.inventory(), indent=2) + "\n")
        return path

    def _tail(self, name: str, lines: int = 6) -> str:
        """The console's last words, the kernel's own lines (``[  1.23] …``) left out."""
        with contextlib.suppress(OSError):
            said = [ln.strip() for ln in (self.dir / f"{name}.console.log").read_text(errors="replace").splitlines()
                    if ln.strip() and not ln.startswith(("[", "Memory KASLR", "Poking KASLR", "Probing EDD"))]
            return " | ".join(said[-lines:]) or "(no output)"
        return "(no console log)"

    def describe(self) -> list[dict[str, Any]]:
        return [{**asdict(g), "kernel": g.kernel.release} for g in self.guests.values()]


def _banner(port: int) -> bool:
    """sshd's greeting on the forwarded port (QEMU accepts before the guest listens)."""
    try:
        with socket.create_connection((LOOPBACK, port), timeout=5) as s:
            s.settimeout(5)
            return s.recv(8).startswith(b"SSH-")
    except OSError:
        return False


def plan(spec: str, cpus: int, memory_mib: int) -> list[GuestHost]:
    """Guests from ``--kernels 6.1,6.12:v1`` (kernels resolved, fetched if need be; accelerators decided)."""
    from harness.matrix import accel, kernels

    wanted = []
    for item in (s.strip() for s in spec.split(",") if s.strip()):
        kernel, _, mode = item.rpartition(":") if item.endswith((":v1", ":v2")) else (item, "", "v2")
        wanted.append((kernel, mode))
    if not wanted:
        raise UserError("fleet lab: --kernels names no kernel")
    resolved = kernels.resolve_all([k for k, _ in wanted])
    out: list[GuestHost] = []
    names: set[str] = set()
    for k, (_, mode) in zip(resolved, wanted, strict=True):
        v = accel.verdict(k.image)
        name = f"guest-{k.label}" + ("" if mode == "v2" else f"-{mode}")
        name = name if name not in names else f"{name}-{len(names)}"
        names.add(name)
        out.append(GuestHost(name, k, mode, v.accel, v.reason, free_port(), cpus, memory_mib))
    return out


def main(spec: str, inventory: Path, local: bool, cpus: int, memory_mib: int, argv: list[str]) -> int:
    """``isobench fleet lab``: boot, write the inventory, run ``argv`` (or wait for Ctrl-C), power off."""
    if guest.vng_binary() is None:
        raise UserError("fleet lab: vng is not installed (pip install virtme-ng)")
    guests = plan(spec, cpus, memory_mib)
    with Lab(guests, local) as lab:
        print(f"fleet lab: booting {', '.join(f'{g.name} ({g.kernel.release}, {g.accel})' for g in guests)}…",
              flush=True)
        for name, seconds in lab.boot_all().items():
            print(f"fleet lab: {name} answers SSH on {LOOPBACK}:{lab.guests[name].port} after {seconds:.0f} s",
                  flush=True)
        lab.write_inventory(inventory)
        print(f"fleet lab: inventory {inventory}", flush=True)
        old = signal.signal(signal.SIGTERM, _interrupt)
        try:
            if argv:
                return _command(argv)
            print("fleet lab: up; Ctrl-C powers the guests off", flush=True)
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            return 130
        finally:
            signal.signal(signal.SIGTERM, old)
            inventory.unlink(missing_ok=True)  # its keys go with the lab
            print("fleet lab: guests powered off", flush=True)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _command(argv: list[str]) -> int:
    """Run ``argv`` in a process group of its own and pass each Ctrl-C (or SIGTERM) on to it as one
    SIGINT, then wait: a ``fleet run`` stops and cleans its hosts up before the guests go."""
    proc = subprocess.Popen(argv, process_group=0)
    while True:
        try:
            return proc.wait()
        except KeyboardInterrupt:
            proc.send_signal(signal.SIGINT)
