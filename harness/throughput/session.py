"""One throughput sample: N instances of one backend at once, their network and storage, the
host's clients, and every tool run judged.

Per instance ``k`` the sample makes a client namespace and link ``k`` (``runtimes.netlab``):

- a process backend gets a server namespace joined to the client's by a veth pair, and
  ``extra["netns"]`` (bare runs in it); one that makes a network namespace of its own
  (unshare, the containers) is found in it after its start, and the pair is remade into that
  namespace instead -- an instance in the host's namespace is refused (the network rule);
- a guest gets a tap (``extra["tap"]``) that its QEMU opens in the host's namespace and that is
  moved into the client's namespace once QEMU holds it, and a raw disk (``extra["disk"]``);
  it configures its own end (``guest_net``).

Storage: one host directory per sample (``runtimes.throughput.scratch``), also given as
``extra["volume"]``; the instance's script finds its target itself (``script.storage_target``).
Once every instance is ready and plumbed, the host opens their start gates together, so their
benchmarks run at the same time; then it runs the client benchmarks against all of them at once.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from runtimes import netlab
from runtimes.base import BackendError, Instance
from runtimes.netlab import Link, Namespace
from runtimes.throughput import catalog, parse, script
from runtimes.throughput.catalog import Bench
from runtimes.throughput.parse import Reading, ToolFailure
from runtimes.throughput.scratch import Scratch
from runtimes.wait import wait_until

#: how long the host keeps knocking at an instance's gate (a guest configures its address first)
GATE_S = 60.0
#: how long a guest's QEMU may take to open its tap
TAP_S = 30.0
#: per benchmark, beyond its seconds: tool start, fio's ramp and file layout, the result's trip
OVERHEAD_S = 4.0


@dataclass(frozen=True)
class Plan:
    """What one sample runs: ``benches`` for ``seconds`` each, on ``instances`` instances at once."""

    benches: tuple[Bench, ...]
    seconds: int
    instances: int = 1
    #: the containers' storage target: their own writable root (True) or the volume (False)
    layer: bool = False
    size_mib: int = catalog.FIO_SIZE_MIB
    #: host CPUs every instance is pinned to (its tools by taskset; a guest's vCPUs by the host);
    #: empty: not pinned
    cpus: tuple[int, ...] = ()

    @property
    def local(self) -> tuple[Bench, ...]:
        return tuple(b for b in self.benches if b.where == "instance")

    @property
    def clients(self) -> tuple[Bench, ...]:
        return tuple(b for b in self.benches if b.where == "client")

    def allowance(self) -> float:
        """Seconds the instances' benchmarks may take, from the gate to the servers."""
        return len(self.local) * (self.seconds + OVERHEAD_S) + 30


@dataclass
class Outcome:
    """One instance's part of the sample: a reading or a reason per benchmark, and what its
    storage benchmarks wrote to."""

    readings: dict[str, Reading] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    target: str | None = None


#: launch one instance with these ``extra`` keys (the caller owns it: the run's context)
Launch = Callable[[Mapping[str, Any]], Instance]


def guest_net(link: Link) -> list[str]:
    """A guest's own end of its link: its virtio-net device (eth0) up with the peer address."""
    b = "/bin/busybox"
    return [f"n=0; until [ -e /sys/class/net/eth0 ]; do n=$((n+1)); [ $n -lt 600 ] || "
            f"{{ echo 'isobench: no eth0 in the guest' >&2; exit 91; }}; {b} sleep 0.05; done",
            f"{b} ip link set lo up && {b} ip addr add {link.peer.with_prefixlen} dev eth0 && "
            f"{b} ip link set eth0 up || exit 91"]


def _netns_inode(path: str) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def attach(inst: Instance, client: Namespace, server: Namespace, index: int, lab: netlab.Lab) -> Link:
    """After the start of a process instance: the link it is on -- the prepared pair when it runs
    in ``server``, else a pair remade into the namespace it made itself (a process of it may
    still sit in ``server``: unshare(1) before its fork).  An instance in the host's namespace
    is refused (BackendError)."""
    host, prepared = _netns_inode("/proc/self/ns/net"), _netns_inode(server.path)
    seen: dict[int, int] = {}  # netns inode -> a pid in it
    for pid in inst.processes():
        ino = _netns_inode(f"/proc/{pid}/ns/net")
        if ino is not None:
            seen.setdefault(ino, pid)
    own = [pid for ino, pid in seen.items() if ino not in (host, prepared)]
    if own:
        netlab.unlink(client, index)  # the prepared pair (a namespace's end goes only when it is freed)
        netlab.remove(server)
        lab.made.remove(server)
        return netlab.veth(client, Namespace.of_process(own[0]), index)
    if prepared in seen:
        return netlab.link_addresses(index)
    raise BackendError(f"{inst.name} runs in the host's network namespace: the benchmarks' traffic must "
                       f"stay in namespaces isobench made (the network rule)")


def _instance_ns(inst: Instance, lab: netlab.Lab) -> Namespace:
    """The namespace holding the instance's end: its own, the prepared server's, or (a guest) none
    on the host -- then the client's, which holds the tap."""
    host = _netns_inode("/proc/self/ns/net")
    for pid in inst.processes():
        if _netns_inode(f"/proc/{pid}/ns/net") not in (None, host):
            return Namespace.of_process(pid)
    return lab.made[0]


def _wait_carrier(tap: str, timeout: float) -> None:
    """Until the guest's QEMU holds its tap (the kernel then reports a carrier on it)."""
    from pyroute2 import IPRoute

    def held() -> bool:
        with IPRoute() as ip:
            found = ip.link_lookup(ifname=tap)
            return bool(found) and ip.get_links(found[0])[0].get_attr("IFLA_CARRIER") == 1

    if not wait_until(held, timeout, 0.05):
        raise BackendError(f"the guest's QEMU did not open its tap {tap} within {timeout:g} s")


def _open_gate(client: Namespace, link: Link, deadline: float) -> None:
    argv = ["busybox", "nc", "-w", "2", link.peer_ip, str(catalog.GATE_PORT)]
    while True:
        if netlab.run_in(client, argv, timeout=10).returncode == 0:
            return
        if time.monotonic() > deadline:
            raise BackendError(f"the instance at {link.peer_ip} did not open its start gate within {GATE_S:g} s")
        time.sleep(0.1)


def _client(bench: Bench, client: Namespace, link: Link, seconds: int) -> Reading:
    argv = (catalog.iperf3_client(link.peer_ip, seconds) if bench.tool == "iperf3"
            else catalog.sockperf_client(link.peer_ip, seconds))
    try:
        done = netlab.run_in(client, argv, timeout=seconds + 60)
    except Exception as e:  # noqa: BLE001 - a timeout is this run's failure, not the sample's
        raise ToolFailure(f"{bench.tool} did not finish: {e}") from None
    return parse.judge(bench, done.returncode, done.stdout, done.stderr, seconds)


def run(launch: Launch, guest: bool, run_id: str, plan: Plan, timeout: float,
        observe: Callable[[list[Namespace]], None] | None = None) -> list[Outcome]:
    """Run one sample; every instance, namespace, tap and file it made is gone when it returns.
    ``observe`` is shown every namespace the sample's traffic uses once all are plumbed (tests)."""
    if plan.instances < 1:
        raise ValueError(f"instances must be >= 1, got {plan.instances}")
    with contextlib.ExitStack() as stack:
        lab = stack.enter_context(netlab.Lab(run_id))
        scratch = stack.enter_context(Scratch(run_id))
        clients = [lab.namespace(f"c{k}") for k in range(plan.instances)]
        insts, links = [], []
        for k in range(plan.instances):
            extra, start = _prepare(k, guest, plan, lab, clients[k], scratch, stack)
            inst = stack.enter_context(launch(extra))
            insts.append((inst, start))
        for inst, start in insts:
            inst.wait_ready(timeout)
            links.append(start(inst))
        if observe is not None:
            observe(clients + [_instance_ns(inst, lab) for inst, _ in insts])
        outcomes = _measure(plan, clients, links, [i for i, _ in insts], timeout)
    return outcomes


def _prepare(k: int, guest: bool, plan: Plan, lab: netlab.Lab, client: Namespace, scratch: Scratch,
             stack: contextlib.ExitStack) -> tuple[dict[str, Any], Callable[[Instance], Link]]:
    """Instance ``k``'s launch keys, and what plumbs it once it started."""
    host_dir = str(scratch.path)
    if guest:
        link = netlab.link_addresses(k)
        tap = netlab.tap(lab.run_id)
        stack.callback(netlab.remove_tap, tap)  # a no-op once moved (it goes with the namespace)
        argv = _argv(plan, host_dir, k, guest_net(link), guest=True)
        keys: dict[str, Any] = {"argv": argv, "tap": tap, "disk": str(scratch.disk(k, plan.size_mib)),
                                "disk_serial": script.DISK_SERIAL}
        if plan.cpus:
            keys["cpuset"] = ",".join(map(str, plan.cpus))

        def start_guest(inst: Instance) -> Link:
            _wait_carrier(tap, TAP_S)
            return netlab.move_tap(tap, client, k)

        return keys, start_guest
    server = lab.namespace(f"s{k}")
    lab.link(client, server)
    extra: dict[str, Any] = {"argv": _argv(plan, host_dir, k, ()), "netns": server.path, "volume": host_dir}
    if plan.layer:
        extra["read_only"] = False
    return extra, lambda inst: attach(inst, client, server, k, lab)


def _argv(plan: Plan, host_dir: str, index: int, net_setup: Sequence[str], guest: bool = False) -> list[str]:
    text = script.suite(plan.benches, plan.seconds, host_dir=host_dir, index=index, layer=plan.layer,
                        net_setup=net_setup, size_mib=plan.size_mib, cpus=() if guest else plan.cpus)
    return ["/bin/busybox", "sh", "-c", text]


def _measure(plan: Plan, clients: list[Namespace], links: list[Link], insts: list[Instance],
             timeout: float) -> list[Outcome]:
    n = len(insts)
    deadline = time.monotonic() + GATE_S
    with ThreadPoolExecutor(max_workers=max(2, n)) as pool:
        # every gate at once: the instances' benchmarks start together
        list(pool.map(lambda k: _open_gate(clients[k], links[k], deadline), range(n)))
        outcomes = [Outcome() for _ in range(n)]
        if plan.clients:
            allowance = plan.allowance()
            for inst in insts:
                if not wait_until(_servers_up(inst), allowance, 0.1):
                    raise BackendError(f"{inst.name}: its servers were not up within {allowance:g} s of the gate "
                                       f"(log: {inst.log_path})")
            for bench in plan.clients:
                futures = [pool.submit(_client, bench, clients[k], links[k], plan.seconds) for k in range(n)]
                for k, fut in enumerate(futures):
                    try:
                        outcomes[k].readings[bench.name] = fut.result()
                    except ToolFailure as e:
                        outcomes[k].failures[bench.name] = str(e)
            # the second knock: the clients are done, the instances stop their servers and end
            deadline = time.monotonic() + GATE_S
            list(pool.map(lambda k: _open_gate(clients[k], links[k], deadline), range(n)))
    for k, inst in enumerate(insts):
        _collect(plan, inst, inst.wait(plan.allowance() + timeout), outcomes[k])
    return outcomes


def _servers_up(inst: Instance) -> Callable[[], bool]:
    return lambda: script.SERVERS_UP in inst.results


def _collect(plan: Plan, inst: Instance, status: int, out: Outcome) -> None:
    results = dict(inst.results)
    out.target = results.get(script.TARGET_KEY)
    for bench in plan.local:
        try:
            out.readings[bench.name] = parse.instance_run(bench, results, plan.seconds)
        except ToolFailure as e:
            out.failures[bench.name] = f"{e} (instance {inst.name}, exit status {status}; log: {inst.log_path})"
