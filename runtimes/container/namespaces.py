"""Which namespaces a container gets, and bringing up its loopback interface.

The network namespace starts with ``lo`` down.  The RTM_NEWLINK request that
brings it up is encoded once with pyroute2 in the harness and sent from the
container's init over a plain netlink socket: a full ``IPRoute()`` in the
freshly forked child costs ~15 ms (it builds an asyncio loop), the bare socket
~0.5 ms, which matters for a start-up benchmark.
"""

from __future__ import annotations

import functools
import os
import socket
import struct

from runtimes import syscalls as sc

#: namespace name (as in /proc/<pid>/ns/) -> clone flag
KINDS: dict[str, int] = {
    "pid": sc.CLONE_NEWPID,
    "mnt": sc.CLONE_NEWNS,
    "uts": sc.CLONE_NEWUTS,
    "ipc": sc.CLONE_NEWIPC,
    "net": sc.CLONE_NEWNET,
    "cgroup": sc.CLONE_NEWCGROUP,
}
#: every container gets all of these; the user namespace is not used (the runtime runs as root)
DEFAULT = ("pid", "mnt", "uts", "ipc", "net", "cgroup")

_NLMSG_ERROR = 2


def flags(kinds: tuple[str, ...] = DEFAULT) -> int:
    unknown = set(kinds) - set(KINDS)
    if unknown:
        raise ValueError(f"unknown namespace kind(s): {', '.join(sorted(unknown))} (known: {', '.join(KINDS)})")
    f = 0
    for k in kinds:
        f |= KINDS[k]
    return f


@functools.cache
def loopback_up_request() -> bytes:
    """RTM_NEWLINK for ``lo`` with IFF_UP set, as bytes ready for a NETLINK_ROUTE socket."""
    from pyroute2.netlink import NLM_F_ACK, NLM_F_REQUEST
    from pyroute2.netlink.rtnl import RTM_NEWLINK
    from pyroute2.netlink.rtnl.ifinfmsg import IFF_UP, ifinfmsg

    msg = ifinfmsg()
    msg["index"] = 0  # looked up by name below
    msg["flags"] = IFF_UP
    msg["change"] = IFF_UP
    msg["attrs"] = [("IFLA_IFNAME", "lo")]
    msg["header"]["type"] = RTM_NEWLINK
    msg["header"]["flags"] = NLM_F_REQUEST | NLM_F_ACK
    msg["header"]["sequence_number"] = 1
    msg.encode()
    return bytes(msg.data)


def loopback_up(request: bytes) -> None:
    """Send ``request`` (see above) in the current network namespace; raise OSError on a NACK."""
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as s:
        s.send(request)
        reply = s.recv(4096)
    # struct nlmsghdr {u32 len; u16 type; u16 flags; u32 seq; u32 pid} then int error
    _, kind, _, _, _, error = struct.unpack_from("=IHHIIi", reply)
    if kind != _NLMSG_ERROR:
        raise OSError(0, f"bringing lo up: unexpected netlink reply type {kind}")
    if error != 0:
        raise OSError(-error, f"bringing lo up: {os.strerror(-error)}")


def ns_id(pid: int | str, kind: str) -> str:
    """e.g. ``net:[4026531840]``: equal strings mean the same namespace."""
    return os.readlink(f"/proc/{pid}/ns/{kind}")
