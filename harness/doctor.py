"""``isobench doctor [--fix]``: one line per capability, with the exact fix when missing.

The ``--fix`` path (packages, libvirt configuration, daemons) uses the standard
library only: ``nox -s bench`` and ``.ci/run`` call it with the system Python,
before the project's own dependencies (libvirt-python needs libvirt-dev to
build) are installed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from runtimes.base import PREFIX

#: Debian/Ubuntu packages: the workloads, the VM stack, the OCI peers, and what
#: building the Python dependencies needs (libvirt-python compiles against libvirt-dev)
SYSTEM_PACKAGES = [
    "busybox-static", "stress-ng", "util-linux", "iproute2", "kmod", "cpio", "zstd",
    "qemu-system-x86", "qemu-utils", "libvirt-daemon-system", "libvirt-clients", "libvirt-dev",
    "linux-image-amd64", "runc", "crun",
    "python3-venv", "python3-dev", "gcc", "pkg-config", "git",
]
#: the command whose presence says a package is installed (dpkg is slower to ask)
PACKAGE_PROBES = {
    "busybox-static": "/bin/busybox", "stress-ng": "/usr/bin/stress-ng", "util-linux": "/usr/bin/unshare",
    "iproute2": "/usr/bin/ip", "kmod": "/usr/bin/kmod", "cpio": "/usr/bin/cpio", "zstd": "/usr/bin/zstd",
    "qemu-system-x86": "/usr/bin/qemu-system-x86_64", "qemu-utils": "/usr/bin/qemu-img",
    "libvirt-daemon-system": "/usr/sbin/libvirtd", "libvirt-clients": "/usr/bin/virsh",
    "libvirt-dev": "/usr/include/libvirt/libvirt.h", "runc": "/usr/sbin/runc", "crun": "/usr/bin/crun",
    "gcc": "/usr/bin/gcc", "pkg-config": "/usr/bin/pkg-config", "git": "/usr/bin/git",
}
NAMESPACES = ("pid", "mount", "net", "uts", "ipc", "user", "cgroup")


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str | None = None
    essential: bool = True

    def line(self) -> str:
        mark = "ok  " if self.ok else ("FAIL" if self.essential else "warn")
        text = f"[{mark}] {self.name:<14} {self.detail}"
        return text + (f"  -> fix: {self.fix}" if not self.ok and self.fix else "")


def _debian_package_missing(pkg: str) -> bool:
    probe = PACKAGE_PROBES.get(pkg)
    if probe is not None:
        return not (os.path.exists(probe) or shutil.which(os.path.basename(probe)))
    if pkg == "linux-image-amd64":
        return not list(Path("/boot").glob("vmlinuz-*"))
    if pkg == "python3-venv":
        return subprocess.run(["python3", "-c", "import ensurepip"], capture_output=True).returncode != 0
    if pkg == "python3-dev":
        return not list(Path("/usr/include").glob("python3*/Python.h"))
    return False


def missing_packages() -> list[str]:
    return [p for p in SYSTEM_PACKAGES if _debian_package_missing(p)]


def check_root() -> Check:
    root = os.geteuid() == 0
    return Check("root", root, "running as root" if root else f"running as uid {os.geteuid()}",
                 "run as root (sudo): namespaces, cgroups and libvirt need it")


def check_cgroups() -> Check:
    from runtimes import cgroups

    try:
        info = cgroups.describe()
        cg = cgroups.Cgroup.create(f"{PREFIX}-doctor-{os.getpid()}")
        cg.remove()
    except (OSError, cgroups.CgroupError) as e:
        return Check("cgroups", False, f"cannot create a cgroup below our own: {e}",
                     "run as root on a host with cgroups mounted under /sys/fs/cgroup")
    mode = "v2" if info["version"] == 2 else ("v1 (hybrid)" if info.get("hybrid") else "v1")
    return Check("cgroups", True, f"{mode}, controllers: {', '.join(info['controllers'])}")


def check_namespaces() -> Check:
    if shutil.which("unshare") is None:
        return Check("namespaces", False, "unshare(1) not found", "apt-get install util-linux")
    failed = []
    for ns in NAMESPACES:
        flag = "--fork --pid" if ns == "pid" else f"--{ns}"
        r = subprocess.run(["unshare", *flag.split(), "true"], capture_output=True, text=True)
        if r.returncode != 0:
            failed.append(f"{ns} ({r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode})")
    if failed:
        return Check("namespaces", False, "cannot create: " + ", ".join(failed),
                     "run as root; enable user namespaces (sysctl kernel.unprivileged_userns_clone=1)",
                     essential=any(not f.startswith("user") for f in failed))
    return Check("namespaces", True, ", ".join(NAMESPACES))


def check_tools() -> Check:
    from runtimes import rootfs

    try:
        files = rootfs.inputs()
    except rootfs.RootfsError as e:
        return Check("workloads", False, str(e), "apt-get install busybox-static stress-ng")
    return Check("workloads", True, f"busybox + stress-ng ({len(files)} files with libraries)")


def check_kvm(probe: bool) -> Check:
    if not os.path.exists("/dev/kvm"):
        return Check("kvm", False, "/dev/kvm missing: VMs run emulated (TCG), seconds per boot",
                     "enable virtualization in firmware / load kvm_intel or kvm_amd", essential=False)
    if not probe:
        return Check("kvm", True, "/dev/kvm present (boot probe skipped)")
    try:
        from runtimes.vm import backend as vm_backend
    except ImportError as e:
        return Check("kvm", False, f"cannot probe: {e}", "pip install libvirt-python", essential=False)
    try:
        verdict = vm_backend.accel_verdict()
    except Exception as e:  # the probe talks to libvirt; any failure is a finding, not a crash
        return Check("kvm", False, f"probe failed: {e}", "isobench doctor --fix", essential=False)
    usable = verdict.accel == "kvm"
    return Check("kvm", usable, f"guests boot with {verdict.accel}: {verdict.reason}",
                 None if usable else "none needed: VM figures are labelled 'emulated (TCG)'", essential=False)


def check_libvirt() -> Check:
    try:
        from runtimes.vm import host
    except ImportError as e:
        return Check("libvirt", False, f"VM backend not importable: {e}", "pip install libvirt-python")
    reason = host.libvirt_status()
    if reason and "libvirt-python is not installed" in reason and shutil.which("virsh"):
        # the system Python of `doctor --fix` (before the venv exists): ask virsh instead
        r = subprocess.run(["virsh", "-c", host.uri(), "version"], capture_output=True, text=True)
        if r.returncode == 0:
            return Check("libvirt", False, f"{host.uri()} answers (virsh), but this Python lacks libvirt-python",
                         "pip install libvirt-python (nox sessions do)", essential=False)
    if reason:
        return Check("libvirt", False, reason, "isobench doctor --fix (starts virtlogd and libvirtd)")
    return Check("libvirt", True, "qemu:///system answers")


def check_kernel() -> Check:
    try:
        from runtimes.vm import host
    except ImportError as e:
        return Check("guest kernel", False, str(e), "pip install libvirt-python")
    kernel = host.find_kernel()
    if kernel is None:
        return Check("guest kernel", False, "no /boot/vmlinuz-*", "apt-get install linux-image-amd64")
    return Check("guest kernel", True, kernel)


def check_oci() -> Check:
    from runtimes.oci import RUNTIMES, find_runtime  # the lookup the oci backends use

    found = [r for r in RUNTIMES if find_runtime(r)]
    missing = [r for r in RUNTIMES if r not in found]
    return Check("oci runtimes", not missing, ", ".join(found) or "none",
                 f"apt-get install {' '.join(missing)}", essential=False)


def checks(probe: bool) -> list[Callable[[], Check]]:
    return [check_root, check_cgroups, check_namespaces, check_tools, check_libvirt, check_kernel,
            lambda: check_kvm(probe), check_oci]


def apply_fixes() -> int:
    """Install missing packages and prepare libvirt; stdlib only (see module doc)."""
    if os.geteuid() != 0:
        print("isobench doctor --fix: not root; cannot install packages or start daemons (run with sudo)")
        return 2
    missing = missing_packages()
    if missing:
        if not (shutil.which("apt-get") and Path("/etc/debian_version").exists()):
            print(f"isobench doctor --fix: not a Debian/Ubuntu host; install by hand: {' '.join(missing)}")
            return 2
        print(f"installing: {' '.join(missing)}", flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for cmd in (["apt-get", "update", "-q"],
                    ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing]):
            if subprocess.run(cmd, env=env).returncode != 0:
                print(f"isobench doctor --fix: `{' '.join(cmd)}` failed")
                return 1
    from runtimes.vm import host

    for action in host.configure_libvirt() + host.start_daemons():
        print(action)
    return 0


def main(fix: bool = False, probe: bool = True) -> int:
    if fix:
        rc = apply_fixes()
        if rc:
            return rc
    failed_essential = False
    for make in checks(probe):
        try:
            c = make()
        except Exception as e:  # a broken check must not hide the others
            c = Check(getattr(make, "__name__", "check"), False, f"check crashed: {e}")
        print(c.line(), flush=True)
        failed_essential |= (not c.ok and c.essential)
    with contextlib.suppress(Exception):
        from runtimes import cgroups

        if cgroups.version() == 1:
            print("note: cgroup v1 — attaching a task costs ~ms (RCU); v2 hosts place tasks at clone time")
    return 1 if failed_essential else 0
