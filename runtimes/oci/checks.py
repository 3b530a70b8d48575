"""``isobench doctor`` lines of the OCI peers: are runc and crun installed?"""

from __future__ import annotations

from runtimes.declaration import Check
from runtimes.oci.cli import find_runtime  # the backends' lookup: it also searches /usr/sbin (runc)

#: the runtimes this line is about (runsc, an optional peer, has its own: ``runtimes.oci.runsc.checks``)
RUNTIMES = ("runc", "crun")


def checks(probe: bool = True) -> list[Check]:
    found = [r for r in RUNTIMES if find_runtime(r)]
    missing = [r for r in RUNTIMES if r not in found]
    return [Check("oci runtimes", not missing, ", ".join(found) or "none",
                  f"apt-get install {' '.join(missing)}", essential=False)]
