"""``isobench doctor`` lines of the OCI peers: are runc and crun installed?  Is runsc, and on which
platform does it run here?"""

from __future__ import annotations

from runtimes.declaration import Check
from runtimes.oci.cli import find_runtime, runtime_version  # the backends' lookup: also /usr/sbin (runc)

#: the runtimes this line is about (runsc, an optional peer, has its own: ``runtimes.oci.runsc.checks``)
RUNTIMES = ("runc", "crun")


def checks(probe: bool = True) -> list[Check]:
    found = [r for r in RUNTIMES if find_runtime(r)]
    missing = [r for r in RUNTIMES if r not in found]
    return [Check("oci runtimes", not missing, ", ".join(found) or "none",
                  f"apt-get install {' '.join(missing)}", essential=False)]


def runsc(probe: bool = True) -> list[Check]:
    """runsc (an optional peer): installed, its version, and with ``probe`` the platform it runs on
    here (the backend's own decision: cached, or a probe sandbox on KVM, ~5 s once per host)."""
    exe = find_runtime("runsc")
    if exe is None:
        return [Check("runsc", False, "not installed (an optional peer: runs skip it)", "apt-get install runsc",
                      essential=False)]
    detail = f"{exe} {runtime_version(exe) or '(version unknown)'}"
    if not probe:
        return [Check("runsc", True, detail, essential=False)]
    from runtimes.base import BackendError
    from runtimes.oci.backend import OciBackend

    with OciBackend("oci:runsc", platform="auto") as b:
        reason = b.available()
        if reason is None:
            try:
                b.prepare()
            except BackendError as e:
                reason = str(e)
        meta = b.metadata()
    if reason is not None:
        return [Check("runsc", False, f"{detail}: {reason}", essential=False)]
    return [Check("runsc", True, f"{detail}, platform {meta['accel']} ({meta['platform_reason']})", essential=False)]
