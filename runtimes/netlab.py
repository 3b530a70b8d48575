"""Network plumbing for benchmarks: namespaces, veth pairs and addresses that never leave isobench.

The network rule (HOST-NOTES): traffic only between addresses inside network
namespaces isobench itself created, or on loopback.  So a benchmark's client
never runs in the host's namespace: it runs in a namespace made here, joined to
the instance by a veth pair (bare: a second namespace made here; container: the
instance's own namespace) or, for a guest, by a tap that lives in a namespace
made here.  Every address comes from ``SUBNET`` (10.231.0.0/16, one /30 per
link) and exists only inside those namespaces; IPv6 is switched off in them, so
no link-local address or router solicitation appears either.  Nothing is routed:
a /30 holds the two ends of one link and no default route is ever set.

A guest's link is a tap: a guest backend opens it by name in the host's namespace
(libvirt's ``managed='no'`` ethernet interface, QEMU's ``ifname=``), so ``tap``
makes it there -- down, without an address, IPv6 off, its alias naming its run
and owner -- and ``move_tap`` moves it, still open, into the client's namespace
as soon as the guest's QEMU holds it; there it gets the client's address.

Everything inside a namespace is done by iproute2's ``ip`` (and nsenter), never by
pyroute2's ``NetNS``: that forks the harness -- a multithreaded process -- to open each
socket in another namespace, and a forked child that times out under load goes on
running the harness's own code.  A subprocess is fork+exec, which is safe.

Names: a namespace is ``isobench-<run id>-<pid>.<start>-<role>`` (``/run/netns``;
the middle part is its creator, ``runtimes.owners``), and the creator claims the
run first, so ``sweep`` (``isobench cleanup``) removes only what a dead harness
left and never a live run's; an interface name is limited to 15 bytes, so interfaces are named
``isobench<n>`` and live only inside our namespaces, where they vanish with
the namespace.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import secrets
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from pyroute2 import IPRoute

from runtimes import owners
from runtimes.naming import PREFIX, of_run

#: the only addresses isobench configures: private, and used only inside its own namespaces
SUBNET = ipaddress.IPv4Network("10.231.0.0/16")
#: where ``ip netns`` (and pyroute2) keep named namespaces
NETNS_DIR = Path("/run/netns")
#: /30 links in SUBNET
MAX_LINKS = SUBNET.num_addresses // 4
_NAME = re.compile(rf"^{re.escape(PREFIX)}-(?P<run>.+)-(?P<owner>\d+\.\d+)-(?P<role>[a-z0-9]+)$")
_ROLE = re.compile(r"^[a-z0-9]{1,12}$")
#: interfaces made here: ``isobench`` + a number (IFNAMSIZ leaves 15 bytes)
IFACE = PREFIX


class NetlabError(RuntimeError):
    """Plumbing failed; the message says what and where."""


@dataclass(frozen=True)
class Link:
    """One /30: the client's end (``.1``) and the instance's end (``.2``)."""

    index: int
    client: ipaddress.IPv4Interface
    peer: ipaddress.IPv4Interface

    @property
    def peer_ip(self) -> str:
        return str(self.peer.ip)

    @property
    def client_ip(self) -> str:
        return str(self.client.ip)


def link_addresses(index: int) -> Link:
    """The ``index``-th /30 of SUBNET."""
    if not 0 <= index < MAX_LINKS:
        raise ValueError(f"link index {index} outside 0..{MAX_LINKS - 1}")
    base = int(SUBNET.network_address) + 4 * index
    return Link(index, ipaddress.IPv4Interface(f"{ipaddress.IPv4Address(base + 1)}/30"),
                ipaddress.IPv4Interface(f"{ipaddress.IPv4Address(base + 2)}/30"))


def allowed(address: str) -> bool:
    """May a benchmark use this address?  SUBNET (inside our namespaces) or loopback."""
    ip = ipaddress.ip_address(address.split("%")[0])
    return ip.is_loopback or (ip.version == 4 and ip in SUBNET)


@dataclass(frozen=True)
class Namespace:
    """A network namespace: one made here (``name`` set, under /run/netns), or an instance's
    (``path`` = /proc/PID/ns/net, ``pid`` set; this module never removes it)."""

    path: str
    name: str | None = None
    pid: int | None = None

    @classmethod
    def of_process(cls, pid: int) -> Namespace:
        return cls(f"/proc/{pid}/ns/net", pid=pid)

    @property
    def ref(self) -> str:
        """How ``ip ... netns REF`` names it: its name, or a process in it."""
        if self.name is None and self.pid is None:
            raise ValueError(f"namespace {self.path} has neither a name nor a process")
        return self.name if self.name is not None else str(self.pid)


def ns_name(run_id: str, role: str) -> str:
    if not _ROLE.match(role):
        raise ValueError(f"namespace role {role!r}: 1-12 lowercase letters or digits")
    return f"{PREFIX}-{run_id}-{owners.me().tag()}-{role}"


def create(run_id: str, role: str) -> Namespace:
    """A fresh namespace with loopback up and IPv6 off (the caller removes it: ``remove``)."""
    name = ns_name(run_id, role)
    owners.claim(run_id)  # first: `isobench cleanup` leaves a live run's namespaces alone
    _ip(None, "netns", "add", name)
    ns = Namespace(str(NETNS_DIR / name), name)
    try:
        _ipv6_off(ns)
        _ip(ns, "link", "set", "lo", "up")
    except BaseException:
        remove(ns)
        raise
    return ns


def remove(ns: Namespace) -> None:
    """Remove a namespace made here (its interfaces go with it); idempotent."""
    if ns.name is None or not os.path.exists(ns.path):
        return
    done = subprocess.run([_tool("ip"), "netns", "delete", ns.name], capture_output=True, text=True, check=False)
    if done.returncode != 0 and os.path.exists(ns.path):
        raise NetlabError(f"cannot remove network namespace {ns.name}: {done.stderr.strip()}")


def _tool(name: str) -> str:
    return shutil.which(name) or name


def _ip(ns: Namespace | None, *args: str) -> str:
    """``ip ARGS`` in ``ns`` (None: the host's namespace); its output, or NetlabError with its words."""
    argv = [_tool("ip"), *args]
    try:
        done = subprocess.run(nsenter(ns, argv) if ns is not None else argv, capture_output=True, text=True,
                              timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise NetlabError(f"ip {' '.join(args)}: {e}") from e
    if done.returncode != 0:
        where = f" in {ns.path}" if ns is not None else ""
        raise NetlabError(f"ip {' '.join(args)}{where}: {done.stderr.strip() or f'exit status {done.returncode}'}")
    return done.stdout


def _ipv6_off(ns: Namespace, device: str | None = None) -> None:
    """No IPv6 in ``ns`` (or on one device of it): /proc/sys/net is the caller's namespace's,
    so a process inside writes it."""
    keys = ["all", "default"] if device is None else [device]
    script = "; ".join(f"echo 1 > /proc/sys/net/ipv6/conf/{k}/disable_ipv6" for k in keys)
    done = run_in(ns, ["sh", "-c", script], timeout=10)
    if done.returncode != 0 and os.path.exists("/proc/sys/net/ipv6"):
        raise NetlabError(f"cannot switch IPv6 off in {ns.path}: {done.stderr.strip()}")


def run_in(ns: Namespace, argv: Sequence[str], timeout: float | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` (the host's binaries) in ``ns`` and wait for it; output captured as text."""
    return subprocess.run(nsenter(ns, argv), capture_output=True, text=True, timeout=timeout, check=False)


def nsenter(ns: Namespace, argv: Sequence[str]) -> list[str]:
    """``argv`` prefixed so that it runs in ``ns`` (nothing but the network namespace changes)."""
    tool = shutil.which("nsenter") or "nsenter"
    return [tool, f"--net={ns.path}", "--", *argv]


def veth(client: Namespace, peer: Namespace, index: int) -> Link:
    """A veth pair between ``client`` and ``peer``, addressed as link ``index``, both ends up.

    The pair is created inside ``client`` with its other end born in ``peer``: neither end
    ever exists in the host's namespace."""
    link = link_addresses(index)
    here, there = f"{IFACE}{index}c", f"{IFACE}{index}p"
    _ip(client, "link", "add", here, "type", "veth", "peer", "name", there, "netns", peer.ref)
    if peer.name is None:  # an instance's namespace: its `default` setting is not ours
        _ipv6_off(peer, there)
    for ns, dev, addr in ((client, here, link.client), (peer, there, link.peer)):
        _ip(ns, "addr", "add", addr.with_prefixlen, "dev", dev)
        _ip(ns, "link", "set", dev, "up")
        _ip(ns, "link", "set", "lo", "up")
    return link


def unlink(client: Namespace, index: int) -> None:
    """Remove the veth pair of link ``index`` (both ends: deleting one deletes its peer)."""
    _ip(client, "link", "delete", f"{IFACE}{index}c")


def tap(run_id: str) -> str:
    """A persistent tap in the host's namespace for a guest to open by name (see the module doc);
    the caller moves it (``move_tap``) or removes it (``remove_tap``)."""
    owners.claim(run_id)
    name = f"{IFACE}{secrets.token_hex(3)}t"  # 15 bytes: unique while it lives in the host's namespace
    with IPRoute() as ip:
        try:
            ip.link("add", ifname=name, kind="tuntap", mode="tap")
        except OSError as e:
            raise NetlabError(f"cannot make a tap for the guest: {e}") from e
        try:
            idx = ip.link_lookup(ifname=name)[0]
            ip.link("set", index=idx, ifalias=f"{PREFIX}-{run_id}-{owners.me().tag()}-tap")
            with open(f"/proc/sys/net/ipv6/conf/{name}/disable_ipv6", "w") as f:
                f.write("1")
        except (OSError, IndexError) as e:
            remove_tap(name)
            raise NetlabError(f"cannot set up tap {name}: {e}") from e
    return name


def move_tap(name: str, client: Namespace, index: int) -> Link:
    """Tap ``name`` into ``client`` with the client's address of link ``index``, up."""
    link = link_addresses(index)
    _ip(None, "link", "set", "dev", name, "netns", client.ref)
    _ip(client, "addr", "add", link.client.with_prefixlen, "dev", name)
    _ip(client, "link", "set", name, "up")
    return link


def remove_tap(name: str) -> None:
    """Remove a tap still in the host's namespace (one moved goes with its namespace); idempotent."""
    with IPRoute() as ip, contextlib.suppress(OSError, IndexError):
        ip.link("del", index=ip.link_lookup(ifname=name)[0])


def host_taps() -> Iterator[tuple[str, str]]:
    """(name, alias) of the taps made here that are still in the host's namespace."""
    with IPRoute() as ip:
        for link in ip.get_links():
            name, alias = link.get_attr("IFLA_IFNAME") or "", link.get_attr("IFLA_IFALIAS") or ""
            if name.startswith(IFACE) and alias.startswith(f"{PREFIX}-"):
                yield name, alias


def addresses(ns: Namespace) -> list[str]:
    """Every address configured in ``ns`` (IPv4 and IPv6), as text."""
    return [a["local"] for link in json.loads(_ip(ns, "-j", "addr", "show") or "[]")
            for a in link.get("addr_info", []) if "local" in a]


class Lab:
    """The namespaces of one sample: made on demand, all removed by ``close`` (a context manager)."""

    def __init__(self, run_id: str):
        self.run_id = run_id
        self.made: list[Namespace] = []
        self._next_link = 0

    def namespace(self, role: str) -> Namespace:
        ns = create(self.run_id, role)
        self.made.append(ns)
        return ns

    def link(self, client: Namespace, peer: Namespace) -> Link:
        """The next /30 of this lab, as a veth pair ``client`` <-> ``peer``."""
        index, self._next_link = self._next_link, self._next_link + 1
        return veth(client, peer, index)

    def close(self) -> None:
        while self.made:
            remove(self.made.pop())

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def ours(run_id: str | None = None) -> Iterator[str]:
    """The name of every namespace made here (of ``run_id`` only, if given)."""
    with contextlib.suppress(FileNotFoundError):
        for entry in sorted(os.listdir(NETNS_DIR)):
            m = _NAME.match(entry)
            if m and (run_id is None or m["run"] == run_id):
                yield entry


def sweep(run_id: str | None = None) -> list[str]:
    """Remove the namespaces dead harnesses left (of ``run_id`` only, if given): neither their
    run nor their creator is alive; what was removed, one line each."""
    live = owners.live()
    removed = []
    for name in ours(run_id):
        if live.owns(name):
            continue  # a live run's, or its creator still runs
        remove(Namespace(str(NETNS_DIR / name), name))
        removed.append(f"network namespace {name}")
    for name, alias in host_taps():
        if (run_id is None or of_run(alias, run_id)) and not live.owns(alias):
            remove_tap(name)
            removed.append(f"tap {name} ({alias})")
    return removed
