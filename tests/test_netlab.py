"""Benchmark network plumbing: addresses only from 10.231.0.0/16 inside our own namespaces, real
traffic over a veth pair, and nothing left behind (also after a SIGKILL)."""

from __future__ import annotations

import ipaddress
import os
import signal
import subprocess
import sys
import time

import pytest

from harness import cleanup
from runtimes import netlab, owners
from runtimes.throughput import catalog, parse


def test_link_addresses_are_consecutive_slash_30s_of_the_subnet() -> None:
    first, last_of_row, next_row = netlab.link_addresses(0), netlab.link_addresses(63), netlab.link_addresses(64)
    assert (first.client_ip, first.peer_ip) == ("10.231.0.1", "10.231.0.2")
    assert (last_of_row.client_ip, last_of_row.peer_ip) == ("10.231.0.253", "10.231.0.254")
    assert next_row.client_ip == "10.231.1.1"
    links = [netlab.link_addresses(i) for i in range(netlab.MAX_LINKS)]
    nets = {ln.client.network for ln in links}
    assert len(nets) == netlab.MAX_LINKS and all(n.subnet_of(netlab.SUBNET) for n in nets)
    for bad in (-1, netlab.MAX_LINKS):
        with pytest.raises(ValueError):
            netlab.link_addresses(bad)


def test_only_the_subnet_and_loopback_are_allowed() -> None:
    for ok in ("10.231.0.2", "10.231.255.254", "127.0.0.1", "127.5.5.5", "::1"):
        assert netlab.allowed(ok), ok
    # libvirt's default NAT network, other private ranges, a public address, IPv6 link-local
    for bad in ("192.168.122.1", "10.0.2.15", "10.232.0.1", "172.17.0.1", "8.8.8.8", "fe80::1"):
        assert not netlab.allowed(bad), bad


def test_namespace_names_carry_run_and_creator_and_refuse_odd_roles() -> None:
    name = netlab.ns_name("20261207-101010-x-ab12", "client0")
    assert name == f"isobench-20261207-101010-x-ab12-{owners.me().tag()}-client0"
    for role in ("", "Client", "a-b", "x" * 13):
        with pytest.raises(ValueError):
            netlab.ns_name("r", role)


def _ours(run_id: str) -> list[str]:
    return list(netlab.ours(run_id))


@pytest.mark.privileged
def test_veth_links_use_only_allowed_addresses_and_carry_real_traffic(run_id: str, no_leftovers: None) -> None:
    with netlab.Lab(run_id) as lab:
        client = lab.namespace("client")
        servers = [lab.namespace(f"server{i}") for i in range(2)]
        links = [lab.link(client, s) for s in servers]
        assert [ln.index for ln in links] == [0, 1]
        for ns in [client, *servers]:
            found = netlab.addresses(ns)
            assert found and all(netlab.allowed(a) for a in found), found
            assert not any(ipaddress.ip_address(a).version == 6 for a in found), "IPv6 must be off"
        assert set(netlab.addresses(client)) == {"127.0.0.1", links[0].client_ip, links[1].client_ip}
        # real traffic: iperf3 server in the second server namespace, client in the client one
        server = subprocess.Popen(netlab.nsenter(servers[1], catalog.iperf3_server()),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(0.3)
            done = netlab.run_in(client, catalog.iperf3_client(links[1].peer_ip, 1), timeout=30)
            reading = parse.judge(catalog.bench("tcp_stream"), done.returncode, done.stdout, done.stderr, 1)
            assert reading.value > 0
        finally:
            server.kill()
            server.wait()
        assert len(_ours(run_id)) == 3
    assert _ours(run_id) == []


_KILLED_CHILD = """
import sys, time
from runtimes import netlab, owners
netlab.create(sys.argv[1], "orphan")
print("made", flush=True)
time.sleep(60)
"""


@pytest.mark.privileged
def test_sweep_removes_a_killed_runs_namespaces_and_spares_live_ones(run_id: str, no_leftovers: None) -> None:
    killed_run = f"{run_id}k"
    child = subprocess.Popen([sys.executable, "-c", _KILLED_CHILD, killed_run], stdout=subprocess.PIPE, text=True,
                             cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    live = None
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "made"
        live = netlab.create(run_id, "live")
        swept = cleanup.cleanup(killed_run) + cleanup.cleanup(run_id)
        assert [line for line in swept if killed_run in line or run_id in line] == []  # (a dead harness's, not ours)
        assert len(_ours(killed_run)) == 1 and _ours(run_id) == [live.name], "live runs' namespaces are spared"
        child.send_signal(signal.SIGKILL)
        child.wait()
        # isobench cleanup (every registered sweep) finds the orphan: its run and creator are gone
        # (the mount sweep may unmount its /run/netns handle first; the namespace sweep removes it)
        removed = [line for line in cleanup.cleanup(None) if killed_run in line]
        assert any(line.startswith("network namespace ") and "orphan" in line for line in removed), removed
        assert _ours(killed_run) == [] and _ours(run_id) == [live.name]
    finally:
        child.kill()
        child.wait()
        if live is not None:
            netlab.remove(live)
    assert _ours(run_id) == []
