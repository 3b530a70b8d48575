"""The one name every isobench object on a host carries (cgroups, mounts, domains, processes).

A leaf module (it imports nothing of ours) so that low-level packages such as
``runtimes.cgroups`` can use it without importing the backend contract.
"""

from __future__ import annotations

#: Everything isobench creates on a host carries this in its name.
PREFIX = "isobench"
