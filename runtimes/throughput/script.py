"""The instance's side of a throughput sample: one busybox shell script, the same on every backend.

The script (after the ready marker) waits at a **gate** -- a one-shot TCP
listener on ``GATE_PORT`` inside its own network namespace -- until the host
connects from its client namespace: so N instances of a concurrency step start
their benchmarks together even when their starts (a guest's boot) differ by
seconds.  Then it runs each ``instance`` benchmark in turn and reports, on the
marker channel, per benchmark ``ID``::

    ISOBENCH RESULT tp.ID.rc=<the tool's exit status>
    ISOBENCH RESULT tp.ID.out=<its result file (YAML/JSON), gzip + base64, one line>
    ISOBENCH RESULT tp.ID.log=<the last LOG_TAIL bytes of its stdout+stderr, gzip + base64>

and the host judges each one (``runtimes.throughput.parse``): the script never
decides whether a run counted.  Last, when the sample has ``client``
benchmarks, it starts the iperf3 and sockperf servers, says
``tp.servers=up`` once both listen, and ends when iperf3 has served its one
test.  Its scratch directory is removed on exit.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from runtimes.throughput import catalog
from runtimes.throughput.catalog import Bench
from runtimes.workloads import BUSYBOX, MARKER_FD, READY, RESULT, WORKDIR

#: how much of a tool's own log comes back (the reason of a failure is at its end)
LOG_TAIL = 4096
#: result keys: ``tp.<bench>.<field>``
KEY = "tp"
SERVERS_UP = f"{KEY}.servers"
#: exit statuses of the script itself (the tools' own are reported, not returned)
NO_WORKDIR, NO_SCRATCH, GATE_FAILED, SERVERS_FAILED = 96, 95, 94, 93


def key(bench: str, field: str) -> str:
    return f"{KEY}.{bench}.{field}"


def _hexport(port: int) -> str:
    return f"{port:04X}"


def _listening(port: int) -> str:
    """True once something listens on TCP ``port`` (any IPv4 address): /proc/net/tcp's state 0A."""
    return f"{BUSYBOX} grep -q ' 00000000:{_hexport(port)} 00000000:0000 0A' /proc/net/tcp"


def suite(benches: Sequence[Bench], seconds: int, target: str | None = None, net_setup: str = "",
          size_mib: int = catalog.FIO_SIZE_MIB) -> str:
    """The script of one instance: the gate, each benchmark of ``benches`` (storage ones on
    ``target``: a directory, or a block device), then the servers of the client benchmarks.

    ``net_setup``: shell lines that bring the instance's own network end up (a guest
    configures its virtio-net device itself); empty where the host plumbs it."""
    b = BUSYBOX
    lines = [
        f"cd {WORKDIR} || exit {NO_WORKDIR}",
        f"echo '{READY}' >&{MARKER_FD}",
        f"d=$({b} mktemp -d {WORKDIR}/isobench-tp.XXXXXX) || exit {NO_SCRATCH}",
        # stress-ng's exec benchmark runs as nobody and writes its YAML here
        f"{b} chmod 777 \"$d\"; trap '{b} rm -rf \"$d\"' EXIT",
        net_setup,
        # the gate: one connection from the host's client namespace, then go
        f"{b} nc -l -p {catalog.GATE_PORT} </dev/null >/dev/null 2>&1 || "
        f"{{ echo 'isobench: the start gate failed' >&2; exit {GATE_FAILED}; }}",
        "tp() {",
        '  _id=$1; shift',
        # in the scratch directory: result files are named relative to it (stress-ng's temp-path too)
        '  (cd "$d" && exec "$@") > "$d/$_id.log" 2>&1',
        f"  echo \"{RESULT} {KEY}.$_id.rc=$?\" >&{MARKER_FD}",
        f"  [ ! -s \"$d/$_id.out\" ] || echo \"{RESULT} {KEY}.$_id.out=$({b} gzip -c \"$d/$_id.out\" | "
        f"{b} base64 -w 0)\" >&{MARKER_FD}",
        f"  echo \"{RESULT} {KEY}.$_id.log=$({b} tail -c {LOG_TAIL} \"$d/$_id.log\" | {b} gzip -c | "
        f"{b} base64 -w 0)\" >&{MARKER_FD}",
        "}",
    ]
    for bench in benches:
        if bench.where != "instance":
            continue
        out = f"{bench.name}.out"
        if bench.tool == "fio":
            if target is None:
                raise ValueError(f"benchmark {bench.name} needs a storage target")
            argv = catalog.fio_argv(bench, target, seconds, out, size_mib)
        else:
            argv = catalog.stress_argv(bench, seconds, out)
        lines.append(f"tp {bench.name} {shlex.join(argv)}")
    if any(bench.where == "client" for bench in benches):
        lines += _servers()
    lines.append("exit 0")
    return "\n".join(line for line in lines if line) + "\n"


def _servers() -> list[str]:
    b = BUSYBOX
    up = f"{_listening(catalog.IPERF_PORT)} && {_listening(catalog.SOCKPERF_PORT)}"
    return [
        f"{shlex.join(catalog.iperf3_server())} > \"$d/iperf3-server.log\" 2>&1 & ip3=$!",
        f"{shlex.join(catalog.sockperf_server())} > \"$d/sockperf-server.log\" 2>&1 & sp=$!",
        # both listening within ~10 s, or the sample fails here with the servers' own words
        f"n=0; until {up}; do n=$((n+1)); [ $n -lt 200 ] || {{ {b} tail -c 400 \"$d\"/*-server.log >&2; "
        f"exit {SERVERS_FAILED}; }}; {b} sleep 0.05; done",
        f"echo \"{RESULT} {SERVERS_UP}=up\" >&{MARKER_FD}",
        "wait $ip3",
        f"echo \"{RESULT} {KEY}.iperf3_server.rc=$?\" >&{MARKER_FD}",
        "kill $sp 2>/dev/null; wait $sp",
    ]
