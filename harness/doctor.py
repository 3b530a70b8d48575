"""``isobench doctor [--fix]``: one line per capability, with the exact fix when missing.

The ``--fix`` path (packages, libvirt configuration, daemons) uses the standard
library only: ``nox -s bench`` and ``.ci/run`` call it with the system Python,
before the project's own dependencies (libvirt-python needs libvirt-dev to
build) are installed.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

from runtimes.base import PREFIX
from runtimes.declaration import Check, Declaration, resolve

#: Debian/Ubuntu packages: the workloads, the VM stack, the OCI peers, and what
#: building the Python dependencies needs (libvirt-python compiles against libvirt-dev)
SYSTEM_PACKAGES = [
    "busybox-static", "stress-ng", "util-linux", "iproute2", "kmod", "cpio", "zstd",
    "qemu-system-x86", "qemu-utils", "libvirt-daemon-system", "libvirt-clients", "libvirt-dev",
    "linux-image-amd64", "runc", "crun",
    "python3-venv", "python3-dev", "gcc", "pkg-config", "git",
    "chromium",  # the report tests render report.html as a reader's browser does (headless)
    "fonts-dejavu-core",  # ... with a real font: chromium only recommends one
    # the container's seccomp filter is compiled by libseccomp (PyPI pyseccomp binds it); the
    # container's native zygote and the hardening tests' probe are built with gcc, static
    # where libc6-dev's libc.a is there
    "libseccomp2", "libc6-dev",
    "skopeo", "umoci",  # image tests and `nox -s images` make OCI layouts / docker-archives with them
    "redis-server",  # the example redis image is made from this package's files
    "runsc", "bubblewrap",  # the optional peers oci:runsc (gVisor) and bwrap
    "fio", "iperf3", "sockperf",  # the throughput measurement's tools (copied into its workload tree)
    # `isobench fleet` reaches its hosts over SSH (Ansible); its test lab's guests run sshd
    "openssh-client", "openssh-server",
]
#: the command whose presence says a package is installed (dpkg is slower to ask)
PACKAGE_PROBES = {
    "busybox-static": "/bin/busybox", "stress-ng": "/usr/bin/stress-ng", "util-linux": "/usr/bin/unshare",
    "iproute2": "/usr/bin/ip", "kmod": "/usr/bin/kmod", "cpio": "/usr/bin/cpio", "zstd": "/usr/bin/zstd",
    "qemu-system-x86": "/usr/bin/qemu-system-x86_64", "qemu-utils": "/usr/bin/qemu-img",
    "libvirt-daemon-system": "/usr/sbin/libvirtd", "libvirt-clients": "/usr/bin/virsh",
    "libvirt-dev": "/usr/include/libvirt/libvirt.h", "runc": "/usr/sbin/runc", "crun": "/usr/bin/crun",
    "gcc": "/usr/bin/gcc", "pkg-config": "/usr/bin/pkg-config", "git": "/usr/bin/git",
    "chromium": "/usr/bin/chromium", "fonts-dejavu-core": "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "skopeo": "/usr/bin/skopeo", "umoci": "/usr/bin/umoci", "redis-server": "/usr/bin/redis-server",
    "runsc": "/usr/bin/runsc", "bubblewrap": "/usr/bin/bwrap",
    "fio": "/usr/bin/fio", "iperf3": "/usr/bin/iperf3", "sockperf": "/usr/bin/sockperf",
    "openssh-client": "/usr/bin/ssh", "openssh-server": "/usr/sbin/sshd",
}
NAMESPACES = ("pid", "mount", "net", "uts", "ipc", "user", "cgroup")
#: util-linux's unshare(1), which tries each namespace kind in a child
UNSHARE_TOOL = os.path.basename(PACKAGE_PROBES["util-linux"])


def _declared_packages() -> dict[str, str]:
    """The packages the backends declare (``Declaration.packages``: package -> the file it installs)."""
    import runtimes  # (the declarations only: standard library)

    return {pkg: probe for d in runtimes.declarations() for pkg, probe in d.packages.items()}


def _debian_package_missing(pkg: str) -> bool:
    probe = PACKAGE_PROBES.get(pkg) or _declared_packages().get(pkg)
    if probe is not None:
        return not (os.path.exists(probe) or shutil.which(os.path.basename(probe)))
    if pkg == "linux-image-amd64":
        return not list(Path("/boot").glob("vmlinuz-*"))
    if pkg == "python3-venv":
        return subprocess.run(["python3", "-c", "import ensurepip"], capture_output=True).returncode != 0
    if pkg == "python3-dev":
        return not list(Path("/usr/include").glob("python3*/Python.h"))
    if pkg == "libseccomp2":
        return not list(Path("/usr/lib").glob("*/libseccomp.so.2")) and not Path("/usr/lib/libseccomp.so.2").exists()
    if pkg == "libc6-dev":
        return not list(Path("/usr/lib").glob("*/libc.a")) and not Path("/usr/lib/libc.a").exists()
    return False


def missing_packages() -> list[str]:
    wanted = [*SYSTEM_PACKAGES, *(p for p in _declared_packages() if p not in SYSTEM_PACKAGES)]
    return [p for p in wanted if _debian_package_missing(p)]


def check_root() -> Check:
    root = os.geteuid() == 0
    return Check("root", root, "running as root" if root else f"running as uid {os.geteuid()}",
                 "run as root (sudo): namespaces, cgroups and libvirt need it")


def check_cgroups() -> Check:
    from runtimes import cgroups, owners

    try:
        info = cgroups.describe()
        owners.claim(f"doctor-{os.getpid()}")  # `isobench cleanup` meanwhile leaves it alone
        cg = cgroups.Cgroup.create(f"{PREFIX}-doctor-{os.getpid()}")
        cg.remove()
    except (OSError, cgroups.CgroupError) as e:
        return Check("cgroups", False, f"cannot create a cgroup below our own: {e}",
                     "run as root on a host with cgroups mounted under /sys/fs/cgroup")
    mode = "v2" if info["version"] == 2 else ("v1 (hybrid)" if info.get("hybrid") else "v1")
    return Check("cgroups", True, f"{mode}, controllers: {', '.join(map(str, info['controllers']))}")  # type: ignore[call-overload]


def check_namespaces() -> Check:
    tool = shutil.which(UNSHARE_TOOL)
    if tool is None:
        return Check("namespaces", False, "unshare(1) not found", "apt-get install util-linux")
    failed = []
    for ns in NAMESPACES:
        flag = "--fork --pid" if ns == "pid" else f"--{ns}"
        r = subprocess.run([tool, *flag.split(), "true"], capture_output=True, text=True)
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


def _declarations(backends: Sequence[str] | None) -> list[Declaration]:
    """The registered backends' declarations, or only those named (``doctor --backends``: a fleet
    host prepares what its scenario runs, not every backend)."""
    import runtimes

    return [d for d in runtimes.declarations() if backends is None or d.name in backends]


def backend_checks(probe: bool, backends: Sequence[str] | None = None) -> list[Callable[[], list[Check]]]:
    """Each registered backend's own doctor lines (one call per distinct hook: oci:runc and
    oci:crun share theirs), in registry order."""
    hooks = list(dict.fromkeys(d.doctor for d in _declarations(backends) if d.doctor))
    return [functools.partial(_run_hook, hook, probe) for hook in hooks]


def _run_hook(hook: str, probe: bool) -> list[Check]:
    try:
        fn = resolve(hook)
    except ImportError as e:  # that backend's library is missing: say so, it is not fatal
        return [Check(hook.partition(":")[0].split(".")[1], False, f"not importable: {e}",
                      "pip install the project's dependencies", essential=False)]
    found: list[Check] = fn(probe)
    return found


def checks(probe: bool, backends: Sequence[str] | None = None) -> list[Callable[[], Check | list[Check]]]:
    generic: list[Callable[[], Check | list[Check]]] = [check_root, check_cgroups, check_namespaces, check_tools]
    return generic + list(backend_checks(probe, backends))


def apply_fixes(backends: Sequence[str] | None = None) -> int:
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
    for hook in dict.fromkeys(d.host_setup for d in _declarations(backends) if d.host_setup):
        for action in resolve(hook)():
            print(action)
    return 0


def cgroup_migration_notes(version: int, fdm: dict[str, object]) -> list[str]:
    """What moving a task into a cgroup costs on this host, and the kernel options that change it."""
    if fdm.get("favordynmods"):
        mounts = fdm.get("mounts")
        where = ", ".join(map(str, mounts)) if isinstance(mounts, list) else ""
        return [f"note: cgroup favordynmods is on ({where}): moving a task "
                f"between cgroups does not wait for an RCU grace period"]
    how = ("the container is born in its cgroup (clone3 CLONE_INTO_CGROUP)" if version == 2 else
           "the container moves its only thread itself (0 > tasks), which skips that wait")
    return [f"note: cgroup favordynmods is off: writing a pid to cgroup.procs waits for an RCU grace period "
            f"(8-12 ms measured on a v1 host; runc/crun pay it, {how}). The mount option favordynmods "
            f"(kernel 6.0+) or booting with cgroup_favordynmods=1 (6.7+) removes the wait for everyone, "
            f"at some cost to fork/exit; isobench records the state in every run's host metadata."]


def examine(fix: bool = False, probe: bool = True, backends: Sequence[str] | None = None) -> int:
    """Print one line per check (after installing what is missing, with ``fix``); 1 if an essential one failed."""
    if fix:
        rc = apply_fixes(backends)
        if rc:
            return rc
    failed_essential = False
    for make in checks(probe, backends):
        try:
            made = make()
            found = made if isinstance(made, list) else [made]
        except Exception as e:  # a broken check must not hide the others
            found = [Check(getattr(make, "__name__", "check"), False, f"check crashed: {e}")]
        for c in found:
            print(c.line(), flush=True)
            failed_essential |= (not c.ok and c.essential)
    with contextlib.suppress(Exception):
        from runtimes import cgroups

        for line in cgroup_migration_notes(cgroups.version(), cgroups.describe()["favordynmods"]):  # type: ignore[arg-type]
            print(line)
    return 1 if failed_essential else 0
