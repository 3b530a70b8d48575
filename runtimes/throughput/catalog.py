"""The throughput benchmarks: which tool, with which fixed arguments, measuring what.

Every benchmark is one run of one tool with arguments fixed here, so every
backend runs the same bytes (the tools are copied into the workload tree,
``TOOLS``) doing the same work; only the duration is the scenario's.  The
arguments that decide how much work one operation is are pinned rather than
left to the tool's own probing, because a guest's emulated CPU reports other
caches and CPU counts than the host: STREAM's array size (``STREAM_L3``), the
matrix size, fio's file size and queue depth.

``where`` says who runs the tool: ``instance`` benchmarks run inside the
instance and report their output on the marker channel
(``runtimes.throughput.script``); ``client`` benchmarks run the host's tool in
a client namespace (``runtimes.netlab``) against a server inside the instance.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from runtimes.workloads import BUSYBOX, STRESS_NG, THROUGHPUT_TOOLS

#: the tools the throughput tree adds to the base one: path -> the Debian package providing it
#: (``runtimes.rootfs.build(extra=TOOLS)``; the ``throughput`` workload declares them)
TOOLS: Mapping[str, str] = THROUGHPUT_TOOLS
FIO, IPERF3, SOCKPERF = TOOLS  # their paths, in the order TOOLS lists them
#: the catalog workload that carries them
WORKLOAD = "throughput"

FAMILIES = ("cpu", "memory", "kernel", "storage", "network")
FAMILY_TITLES = {"cpu": "CPU", "memory": "Memory", "kernel": "Kernel paths", "storage": "Storage",
                 "network": "Network"}
#: stress-ng sizes each of STREAM's three arrays at 4x the L3 it is told: 8M -> 3 x 32 MiB, past
#: this host's 32 MiB L3 in all; the same on every backend (a guest's CPU model reports another L3)
STREAM_L3 = "8M"
#: the random-indexed variant over 3 x 8 MiB: one pass over 3 x 32 MiB took ~5 s here (a sample
#: would last that long whatever its seconds); 24 MiB is past L2, within this host's L3
STREAM_RANDOM_L3 = "2M"
#: fio: the file (or block-device region) every storage benchmark works on (it fits the built-in
#: container's writable layer, a 256 MiB tmpfs upper), and the queue depth
FIO_SIZE_MIB = 128
IODEPTH = 16
#: what fio discards at the start of each job (queue filling, the first writes' allocation)
FIO_RAMP_S = 1
#: what iperf3 omits at the start (TCP slow start), seconds
IPERF_OMIT_S = 1
#: ports inside the instance's own network namespace: the start gate, iperf3, sockperf
GATE_PORT = 5000
IPERF_PORT = 5201
SOCKPERF_PORT = 11111


@dataclass(frozen=True)
class Bench:
    name: str
    family: str
    tool: str  # the program's name, as messages say it
    unit: str
    higher: bool  # larger is better (a rate); False: smaller is (a latency)
    what: str
    args: tuple[str, ...] = ()
    where: str = "instance"  # or "client"
    #: stress-ng's exec stressor refuses to run as root: run it as nobody (uid 65534)
    as_nobody: bool = False


def _stress(name: str, family: str, what: str, *args: str, as_nobody: bool = False) -> Bench:
    return Bench(name, family, "stress-ng", "bogo-ops/s", True, what, args, as_nobody=as_nobody)


def _fio(name: str, rw: str, bs: str, unit: str, what: str) -> Bench:
    return Bench(name, "storage", "fio", unit, True, what, (rw, bs))


BENCHES: tuple[Bench, ...] = (
    _stress("cpu", "cpu", "stress-ng --cpu, int64 method: integer arithmetic", "--cpu", "1", "--cpu-method", "int64"),
    _stress("matrix", "cpu", "stress-ng --matrix, 128 x 128 product: floating point (the Linpack stand-in)",
            "--matrix", "1", "--matrix-method", "prod", "--matrix-size", "128"),
    _stress("stream", "memory", "stress-ng --stream: STREAM copy+scale+add+triad passes over 3 x 32 MiB",
            "--stream", "1", "--stream-l3-size", STREAM_L3),
    _stress("stream_random", "memory",
            "stress-ng --stream --stream-index 3: STREAM with random indexing over 3 x 8 MiB "
            "(the RandomAccess stand-in)",
            "--stream", "1", "--stream-index", "3", "--stream-l3-size", STREAM_RANDOM_L3),
    _stress("syscall", "kernel", "stress-ng --get: get*() system calls", "--get", "1"),
    _stress("forkexec", "kernel", "stress-ng --exec: fork + execve + exit + wait", "--exec", "1", as_nobody=True),
    _stress("ctxswitch", "kernel", "stress-ng --switch, pipe method: context switches between two processes",
            "--switch", "1", "--switch-method", "pipe"),
    _fio("randread", "randread", "4k", "IOPS", f"fio 4 KiB random read, iodepth {IODEPTH}, O_DIRECT"),
    _fio("randwrite", "randwrite", "4k", "IOPS", f"fio 4 KiB random write, iodepth {IODEPTH}, O_DIRECT"),
    _fio("seqread", "read", "1M", "MiB/s", f"fio 1 MiB sequential read, iodepth {IODEPTH}, O_DIRECT"),
    _fio("seqwrite", "write", "1M", "MiB/s", f"fio 1 MiB sequential write, iodepth {IODEPTH}, O_DIRECT"),
    Bench("tcp_stream", "network", "iperf3", "Gbit/s", True, "iperf3 TCP stream, client -> instance",
          where="client"),
    Bench("tcp_rr", "network", "sockperf", "us", False,
          "sockperf TCP ping-pong: median one-way latency (half the round trip)", where="client"),
)
BY_NAME: Mapping[str, Bench] = {b.name: b for b in BENCHES}


def bench(name: str) -> Bench:
    try:
        return BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown throughput benchmark {name!r} (known: {', '.join(BY_NAME)})") from None


def stress_argv(b: Bench, seconds: int, yaml_out: str) -> list[str]:
    """stress-ng for ``seconds`` (whole: 0.15 reads 0.5 s as 0 = forever), metrics to ``yaml_out``."""
    argv = [STRESS_NG, *b.args, "--timeout", f"{int(seconds)}s", "--metrics-brief", "--yaml", yaml_out]
    if b.as_nobody:
        # busybox su: root needs no password; -s because nobody's login shell is nologin on the host
        argv = [BUSYBOX, "su", "-s", "/bin/sh", "nobody", "-c", "exec " + " ".join(argv)]
    return argv


def fio_argv(b: Bench, target: str, seconds: int, json_out: str, size_mib: int = FIO_SIZE_MIB) -> list[str]:
    """fio on ``target`` (a file, created at ``size_mib`` if missing, or a block device)."""
    rw, bs = b.args
    return [FIO, f"--name={b.name}", f"--filename={target}", f"--size={size_mib}M", f"--rw={rw}", f"--bs={bs}",
            f"--iodepth={IODEPTH}", "--ioengine=libaio", "--direct=1", "--time_based",
            f"--runtime={int(seconds)}", f"--ramp_time={FIO_RAMP_S}", "--output-format=json",
            f"--output={json_out}"]


def iperf3_server() -> list[str]:
    # -4: any IPv4 address, so it listens before the instance's address exists
    return [IPERF3, "-s", "-4", "-p", str(IPERF_PORT)]


def iperf3_client(address: str, seconds: int) -> list[str]:
    return [IPERF3, "-c", address, "-p", str(IPERF_PORT), "-t", str(int(seconds)), "-O", str(IPERF_OMIT_S), "-J"]


def sockperf_server() -> list[str]:
    return [SOCKPERF, "server", "--tcp", "-i", "0.0.0.0", "-p", str(SOCKPERF_PORT)]


def sockperf_client(address: str, seconds: int) -> list[str]:
    return [SOCKPERF, "ping-pong", "--tcp", "-i", address, "-p", str(SOCKPERF_PORT), "-t", str(int(seconds))]
