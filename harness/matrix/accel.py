"""KVM or TCG for virtme-ng guests: decided by a real boot with a timeout, cached.

The same rule as the ``vm`` backend (``runtimes.vm.accel``): ``/dev/kvm`` may
open and still hang guests (nested paravirtual KVM on our CI host), so a guest
is booted under KVM and must print its marker in time; otherwise TCG.  The
verdict is cached per host, QEMU and guest kernel (a failed probe costs its
whole timeout); ``ISOBENCH_ACCEL=tcg|kvm`` forces one.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from harness.matrix import guest
from runtimes import rootfs
from runtimes.vm import accel

PROBE_TIMEOUT_S = 30.0  # a KVM guest boots in a few seconds; TCG takes 25-40 s here
MARKER = "isobench-probe-ok"


def probe_boot(kernel: Path, timeout_s: float) -> accel.ProbeResult:
    with tempfile.TemporaryDirectory(prefix="isobench-guest-probe-") as d:
        log = Path(d) / "probe.log"
        start = time.monotonic()
        out = guest.run(guest.Guest(kernel, accel="kvm", cpus=1, memory_mib=512), f"echo {MARKER}",
                        name="probe", log=log, timeout_s=timeout_s)
        text = log.read_text(errors="replace")
        booted = out.ok and MARKER in text
        detail = "" if booted else (out.detail or (text.strip().splitlines() or ["no output"])[-1][:200])
        return accel.ProbeResult(booted, time.monotonic() - start, detail)


def _qemu_version() -> str:
    import subprocess

    try:
        return subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True, text=True,
                              check=False).stdout.split("\n")[0]
    except OSError:
        return "?"


def verdict(kernel: Path, refresh: bool = False) -> accel.Verdict:
    key = dict(accel.cache_key(_qemu_version(), str(kernel)), launcher="virtme-ng")
    cache = rootfs.cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    return accel.resolve(cache=cache, key=key, probe=lambda t: probe_boot(kernel, t), refresh=refresh,
                         timeout_s=PROBE_TIMEOUT_S)
