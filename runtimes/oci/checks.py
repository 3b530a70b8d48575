"""``isobench doctor`` lines of the OCI peers: are runc and crun installed?"""

from __future__ import annotations

from runtimes.declaration import Check


def checks(probe: bool = True) -> list[Check]:
    # the one lookup the backends use too (it also searches /usr/sbin, where Debian puts runc)
    from runtimes.oci import RUNTIMES, find_runtime

    found = [r for r in RUNTIMES if find_runtime(r)]
    missing = [r for r in RUNTIMES if r not in found]
    return [Check("oci runtimes", not missing, ", ".join(found) or "none",
                  f"apt-get install {' '.join(missing)}", essential=False)]
