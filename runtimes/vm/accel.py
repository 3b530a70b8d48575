"""KVM or TCG: decided by booting a guest, not by looking at ``/dev/kvm``.

``/dev/kvm`` can exist and answer ioctls while guests hang under it (nested
virtualisation with a paravirtual KVM: measured on our CI host).  So the
verdict comes from booting the ``noop`` guest with ``domain type='kvm'`` and a
timeout; if it does not reach its ready marker, guests use TCG.  The verdict is
cached per host, host kernel, QEMU version and guest kernel, since a probe that
fails costs its whole timeout.

``decide`` is the pure decision; ``resolve`` adds the forcing, the cache and
the probe (a callable supplied by the backend).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from runtimes.vm.machine import ACCELS

KVM_DEVICE = "/dev/kvm"
DEFAULT_PROBE_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class ProbeResult:
    """What booting the probe guest under KVM gave."""

    booted: bool  # the ready marker arrived in time
    seconds: float  # how long the probe took
    detail: str = ""  # the error, when it did not boot


@dataclass(frozen=True)
class Verdict:
    accel: str  # "kvm" or "tcg"
    reason: str  # one human sentence: why
    probe_s: float | None = None  # how long the probe took (None: no probe ran)
    cached: bool = False  # read from the cache rather than decided now


def kvm_device_problem(path: str = KVM_DEVICE) -> str | None:
    """None when the KVM device can be opened read-write, else why not."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except OSError as e:
        return f"{path}: {e.strerror}"
    os.close(fd)
    return None


def decide(kvm_problem: str | None, probe: ProbeResult | None, *, forced: str | None = None,
           timeout_s: float = DEFAULT_PROBE_TIMEOUT_S) -> Verdict:
    """The accelerator, from the device check and the probe boot (pure logic).

    ``probe`` is needed exactly when a usable KVM device exists and nothing is forced."""
    if forced is not None:
        if forced not in ACCELS:
            raise ValueError(f"unknown accelerator {forced!r} (known: {', '.join(ACCELS)})")
        return Verdict(forced, f"{forced} forced by configuration (no probe)")
    if kvm_problem is not None:
        return Verdict("tcg", f"KVM unavailable ({kvm_problem}); guests run under TCG emulation")
    if probe is None:
        raise ValueError("a KVM device is present: the decision needs a probe boot")
    if probe.booted:
        return Verdict("kvm", f"a KVM guest reached its ready marker in {probe.seconds:.2f} s",
                       probe.seconds)
    what = probe.detail or f"no ready marker within {timeout_s:g} s"
    return Verdict("tcg", f"/dev/kvm is present but a KVM guest did not boot ({what}); "
                          "guests run under TCG emulation", probe.seconds)


def cache_key(qemu_version: str, guest_kernel: str) -> dict[str, str]:
    """What the verdict depends on: this host, its kernel, QEMU, and the guest kernel."""
    try:
        st = os.stat(guest_kernel)
        kernel_id = f"{guest_kernel}:{st.st_size}:{int(st.st_mtime)}"
    except OSError:
        kernel_id = guest_kernel
    return {"host": socket.gethostname(), "host_kernel": os.uname().release,
            "qemu": qemu_version, "guest_kernel": kernel_id}


def _cache_file(cache: Path, key: dict[str, str]) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return cache / f"accel-{digest}.json"


def load_cached(cache: Path, key: dict[str, str]) -> Verdict | None:
    try:
        data = json.loads(_cache_file(cache, key).read_text())
        if data.get("key") != key:
            return None
        v = data["verdict"]
        return Verdict(v["accel"], v["reason"], v.get("probe_s"), cached=True)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def store(cache: Path, key: dict[str, str], verdict: Verdict) -> None:
    path = _cache_file(cache, key)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    data = {"key": key, "verdict": asdict(verdict), "decided_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.rename(tmp, path)


def forced_accel() -> str | None:
    value = os.environ.get("ISOBENCH_ACCEL", "").strip().lower()
    return value or None


def resolve(*, cache: Path, key: dict[str, str], probe: Callable[[float], ProbeResult],
            forced: str | None = None, refresh: bool = False,
            timeout_s: float = DEFAULT_PROBE_TIMEOUT_S, kvm_device: str = KVM_DEVICE) -> Verdict:
    """The verdict for this host: forced, cached, or decided now (and cached)."""
    forced = forced or forced_accel()
    if forced is not None:
        return decide(None, None, forced=forced)
    problem = kvm_device_problem(kvm_device)
    if problem is not None:
        return decide(problem, None)
    if not refresh:
        cached = load_cached(cache, key)
        if cached is not None:
            return cached
    verdict = decide(None, probe(timeout_s), timeout_s=timeout_s)
    with contextlib.suppress(OSError):
        store(cache, key, verdict)
    return verdict

