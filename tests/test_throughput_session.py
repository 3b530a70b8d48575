"""One throughput sample for real: two instances of the built-in container at once, and a guest,
their network only between namespaces isobench made, every address checked, nothing left behind.
(bare, and a tool's failure, go through the whole harness in test_throughput_run.)"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from pyroute2 import IPRoute

import runtimes
from harness.throughput import session
from runtimes import netlab
from runtimes.base import Instance, LaunchSpec
from runtimes.netlab import Namespace
from runtimes.throughput import catalog, scratch
from runtimes.workloads import Workload

#: one of each kind: a stress-ng run as nobody, fio on the storage target, both network clients
BENCHES = tuple(catalog.bench(n) for n in ("forkexec", "randread", "tcp_rr", "tcp_stream"))


def _host_state() -> tuple[set[str], set[str]]:
    """The host namespace's addresses and its interfaces named like ours."""
    with IPRoute() as ip:
        addrs = {str(a.get_attr("IFA_ADDRESS")) for a in ip.get_addr()}
        names = {str(link.get_attr("IFLA_IFNAME")) for link in ip.get_links()}
    return addrs, {n for n in names if n.startswith(netlab.IFACE)}


def _run(name: str, run_id: str, tmp_path: Path, plan: session.Plan) -> tuple[list[session.Outcome], list[str]]:
    backend = runtimes.get(name)
    count = itertools.count()
    seen: list[str] = []

    def launch(extra: Mapping[str, Any]) -> Instance:
        spec = LaunchSpec(workload=Workload(catalog.WORKLOAD), run_id=run_id, instance=f"isobench-{run_id}-{next(count)}",
                          timeout_s=60, log_dir=str(tmp_path), extra=dict(extra))
        return backend.launch(spec)

    def observe(namespaces: list[Namespace]) -> None:
        assert len(namespaces) == 2 * plan.instances  # the clients' and the instances' own
        for ns in namespaces:
            seen.extend(netlab.addresses(ns))
        assert _host_state()[1] == before[1], "no interface of ours in the host's namespace"

    before = _host_state()
    with backend:
        out = session.run(launch, runtimes.is_guest(name), run_id, plan, 60, observe=observe)
    assert _host_state() == before
    return out, seen


@pytest.mark.privileged
@pytest.mark.slow
def test_two_instances_at_once_measure_on_their_own_links(run_id: str, tmp_path: Path,
                                                          no_leftovers: None) -> None:
    plan = session.Plan(BENCHES, 1, instances=2, size_mib=16, cpus=(0,))
    out, seen = _run("container", run_id, tmp_path, plan)
    assert len(out) == 2
    for o in out:
        assert o.failures == {} and sorted(o.readings) == sorted(b.name for b in BENCHES)
        assert all(r.value > 0 for r in o.readings.values()) and o.target == "volume"
    # every address the sample's traffic could use: 10.231.0.0/16 or loopback, one /30 per instance
    assert seen and all(netlab.allowed(a) for a in seen), seen
    assert {netlab.link_addresses(k).peer_ip for k in range(2)} <= set(seen)
    assert list(netlab.ours(run_id)) == [] and not list(scratch.root().glob(f"isobench-{run_id}-*"))


@pytest.mark.privileged
@pytest.mark.vm
@pytest.mark.libvirt
@pytest.mark.slow
def test_a_guest_gets_its_tap_and_disk_and_measures_on_them(run_id: str, tmp_path: Path) -> None:
    plan = session.Plan((catalog.bench("syscall"), catalog.bench("randread"), catalog.bench("tcp_rr")), 1,
                        size_mib=16)
    backend = runtimes.get("vm")
    seen: list[str] = []

    def launch(extra: Mapping[str, Any]) -> Instance:
        # the throughput tree unpacked in RAM, beside what the tools use: more than the default 256 MiB
        spec = LaunchSpec(workload=Workload(catalog.WORKLOAD), run_id=run_id, instance=f"isobench-{run_id}-vm",
                          timeout_s=240, log_dir=str(tmp_path), guest_memory_mib=768, extra=dict(extra))
        return backend.launch(spec)

    def observe(namespaces: list[Namespace]) -> None:
        assert len(namespaces) == 2 and namespaces[1] == namespaces[0]  # the tap lives in the client's
        seen.extend(netlab.addresses(namespaces[0]))

    with backend:
        backend.prepare()
        out = session.run(launch, True, run_id, plan, 240, observe=observe)
    assert out[0].failures == {} and out[0].target == "disk"
    assert all(r.value > 0 for r in out[0].readings.values()) and len(out[0].readings) == 3
    assert seen and all(netlab.allowed(a) for a in seen) and netlab.link_addresses(0).client_ip in seen
    assert list(netlab.ours(run_id)) == [] and not [n for n, alias in netlab.host_taps() if run_id in alias]
