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
benchmarks, it starts their servers (iperf3, sockperf), says ``tp.servers=up``
once they listen, and ends when the host knocks at the gate a second time (its
clients are done).  Its scratch directory is removed on exit.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from runtimes.throughput import catalog, scratch
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


#: the serial of the guest's virtio-blk disk, by which the script finds its device
DISK_SERIAL = "isobench-fio"
#: what the instance wrote its fio file to, reported as ``tp.target``: the host directory (bare,
#: unshare), the guest's virtio-blk disk, the instance's own root (the container's writable layer)
#: or the volume (a host directory bind-mounted at /mnt)
TARGETS = ("host", "disk", "layer", "volume")
TARGET_KEY = f"{KEY}.target"
NO_TARGET = 92


def storage_target(host_dir: str, index: int, layer: bool) -> list[str]:
    """Lines that set ``$t`` to the fio file (or device) and report which target it is.

    The same lines on every backend: what the instance finds decides.  The host directory
    when it sees it (it shares the host's mounts), else a guest's virtio-blk disk (by its
    serial), else -- asked for the writable layer -- a file in its own root, else the volume
    at /mnt (identified by the marker the host wrote into the directory)."""
    b, marker = BUSYBOX, f"{scratch.MARKER}"
    name = f"fio-{index}.dat"
    return [
        "t=; kind=",
        f"if [ -e {shlex.quote(host_dir)}/{marker} ]; then t={shlex.quote(host_dir)}/{name}; kind=host; fi",
        f'if [ -z "$t" ]; then for s in /sys/block/vd*/serial; do [ -e "$s" ] && '
        f'[ "$({b} cat "$s")" = {DISK_SERIAL} ] && {{ v=${{s%/serial}}; t=/dev/${{v##*/}}; kind=disk; }}; done; fi',
        *([f'if [ -z "$t" ]; then t=/root/{name}; kind=layer; fi'] if layer else []),
        f'if [ -z "$t" ] && [ "$({b} cat /mnt/{marker} 2>/dev/null)" = {shlex.quote(host_dir)} ]; '
        f"then t=/mnt/{name}; kind=volume; fi",
        f"[ -n \"$t\" ] || {{ echo 'isobench: no storage target (no host directory, disk, layer or volume)' >&2; "
        f"exit {NO_TARGET}; }}",
        f"echo \"{RESULT} {TARGET_KEY}=$kind\" >&{MARKER_FD}",
    ]


def suite(benches: Sequence[Bench], seconds: int, *, host_dir: str | None = None, index: int = 0,
          layer: bool = False, net_setup: Sequence[str] = (), size_mib: int = catalog.FIO_SIZE_MIB,
          cpus: Sequence[int] = ()) -> str:
    """The script of one instance: the gate, each benchmark of ``benches``, then the servers of
    the client benchmarks.  Storage benchmarks write ``fio-<index>.dat`` on the target
    ``storage_target`` finds (``host_dir``: the sample's directory on the host).

    ``net_setup``: shell lines that bring the instance's own network end up (a guest
    configures its virtio-net device itself); none where the host plumbs it.  ``cpus``: the
    host CPUs every tool is pinned to (busybox taskset; a guest's vCPUs are pinned by the host
    instead, so its script gets none)."""
    b = BUSYBOX
    pin = f"{b} taskset -c {','.join(map(str, cpus))} " if cpus else ""
    storage = [bench for bench in benches if bench.where == "instance" and bench.tool == "fio"]
    if storage and host_dir is None:
        raise ValueError(f"benchmark {storage[0].name} needs a storage target (host_dir)")
    lines = [
        f"cd {WORKDIR} || exit {NO_WORKDIR}",
        f"echo '{READY}' >&{MARKER_FD}",
        f"d=$({b} mktemp -d {WORKDIR}/isobench-tp.XXXXXX) || exit {NO_SCRATCH}",
        # stress-ng's exec benchmark runs as nobody and writes its YAML here
        f"{b} chmod 777 \"$d\"; trap '{b} rm -rf \"$d\"' EXIT",
        *net_setup,
        *(storage_target(host_dir, index, layer) if storage and host_dir is not None else []),
        # the gate: one connection from the host's client namespace, then go
        f"{b} nc -l -p {catalog.GATE_PORT} </dev/null >/dev/null 2>&1 || "
        f"{{ echo 'isobench: the start gate failed' >&2; exit {GATE_FAILED}; }}",
        "tp() {",
        '  _id=$1; shift',
        # in the scratch directory: result files are named relative to it (stress-ng's temp-path too)
        f'  (cd "$d" && exec {pin}"$@") > "$d/$_id.log" 2>&1',
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
            # the target is the shell's $t: quoted for the shell only after the join
            cmd = shlex.join(catalog.fio_argv(bench, _TARGET, seconds, out, size_mib)).replace(_TARGET, '"$t"')
        else:
            cmd = shlex.join(catalog.stress_argv(bench, seconds, out))
        lines.append(f"tp {bench.name} {cmd}")
    if storage:  # the file goes with the sample (a device is the guest's own disk)
        lines.append(f'[ ! -f "$t" ] || {b} rm -f "$t"')
    if any(bench.where == "client" for bench in benches):
        lines += _servers(benches, pin)
    lines.append("exit 0")
    return "\n".join(lines) + "\n"


#: fio's target while the command is joined: safe for shlex (left unquoted), then "$t"
_TARGET = "@TARGET@"


def _servers(benches: Sequence[Bench], pin: str = "") -> list[str]:
    """Start the servers the client benchmarks need, say so once they listen, and stop them when
    the host knocks at the gate a second time (its clients are done)."""
    b = BUSYBOX
    tools = {bench.tool for bench in benches if bench.where == "client"}
    lines, pids, up = [], [], []
    if "iperf3" in tools:
        lines.append(f"{pin}{shlex.join(catalog.iperf3_server())} > \"$d/iperf3-server.log\" 2>&1 & ip3=$!")
        pids.append("$ip3")
        up.append(_listening(catalog.IPERF_PORT))
    if "sockperf" in tools:
        lines.append(f"{pin}{shlex.join(catalog.sockperf_server())} > \"$d/sockperf-server.log\" 2>&1 & sp=$!")
        pids.append("$sp")
        up.append(_listening(catalog.SOCKPERF_PORT))
    return [
        *lines,
        # listening within ~10 s, or the sample fails here with the servers' own words
        f"n=0; until {' && '.join(up)}; do n=$((n+1)); [ $n -lt 200 ] || {{ {b} tail -c 400 \"$d\"/*-server.log >&2; "
        f"exit {SERVERS_FAILED}; }}; {b} sleep 0.05; done",
        f"echo \"{RESULT} {SERVERS_UP}=up\" >&{MARKER_FD}",
        f"{b} nc -l -p {catalog.GATE_PORT} </dev/null >/dev/null 2>&1",
        f"kill {' '.join(pids)} 2>/dev/null; wait",
    ]
