"""``isobench doctor`` lines of the guest backends (vm, qemu): libvirt, a guest kernel, KVM.

Standard library only at import time: ``doctor --fix`` runs under the system
Python before libvirt-python is installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from runtimes.declaration import Check


def check_libvirt() -> Check:
    from runtimes.vm import host

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
    from runtimes.vm import host

    kernel = host.find_kernel()
    if kernel is None:
        return Check("guest kernel", False, "no /boot/vmlinuz-*", "apt-get install linux-image-amd64")
    return Check("guest kernel", True, kernel)


def check_kvm(probe: bool) -> Check:
    if not os.path.exists("/dev/kvm"):
        return Check("kvm", False, "/dev/kvm missing: VMs run emulated (TCG), seconds per boot",
                     "enable virtualization in firmware / load kvm_intel or kvm_amd", essential=False)
    if not probe:
        return Check("kvm", True, "/dev/kvm present (boot probe skipped)")
    try:
        from runtimes.vm.backend import VmBackend
    except ImportError as e:
        return Check("kvm", False, f"cannot probe: {e}", "pip install libvirt-python", essential=False)
    try:
        with VmBackend() as backend:  # closed on the way out
            backend.prepare()  # the explicit host step the runner takes too: guest files, the probe boot
            verdict = backend.verdict()  # what prepare() found (cached)
    except Exception as e:  # the probe talks to libvirt; any failure is a finding, not a crash
        return Check("kvm", False, f"probe failed: {e}", "isobench doctor --fix", essential=False)
    usable = verdict.accel == "kvm"
    return Check("kvm", usable, f"guests boot with {verdict.accel}: {verdict.reason}",
                 None if usable else "none needed: VM figures are labelled 'emulated (TCG)'", essential=False)


def checks(probe: bool = True) -> list[Check]:
    return [check_libvirt(), check_kernel(), check_kvm(probe)]
