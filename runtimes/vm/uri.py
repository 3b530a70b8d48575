"""Which libvirt the ``vm`` backend talks to: ``$ISOBENCH_LIBVIRT_URI``, else the system daemon.

A leaf module: ``host`` (setting libvirt up) and ``connection`` (opening it)
both need it, and neither imports the other for it.
"""

from __future__ import annotations

import os

DEFAULT_URI = "qemu:///system"


def uri() -> str:
    return os.environ.get("ISOBENCH_LIBVIRT_URI") or DEFAULT_URI
