"""Felter et al. 2014 (IBM Research Report RC25482, "An Updated Performance Comparison of Virtual
Machines and Linux Containers"): their ratios to native, beside the nearest of our benchmarks.

Their numbers are theirs: other hardware, other software, KVM on real virtualisation hardware
(ours, on this host: TCG, an emulator), Docker 1.0 (ours: isobench's own runtime and crun).
``exact`` rows are computed from the means of their Table I; the others are read off their
figures or stated in their text, to about ±0.05, and marked ≈ wherever they are shown.
"""

from __future__ import annotations

from dataclasses import dataclass

#: their machine and software, as the paper describes them (Section IV)
HARDWARE = ("IBM System x3650 M4, 2 × Intel Xeon E5-2665 (Sandy Bridge-EP, 16 cores, 2.4–3.0 GHz), "
            "256 GB RAM, 10 Gbit Ethernet; Ubuntu 13.10 (Linux 3.11), Docker 1.0, KVM (QEMU 1.5, libvirt 1.1)")
SOURCE = "Felter, Ferreira, Rajamony, Rubio: IBM Research Report RC25482, July 2014"


@dataclass(frozen=True)
class Published:
    what: str  # their benchmark, their unit
    ours: str  # the nearest of our benchmarks (runtimes.throughput.catalog)
    docker: float | None  # ratio to native; None: not reported
    kvm: float | None
    exact: bool  # from their table's means (else read off a figure / their text)
    note: str = ""


ROWS: tuple[Published, ...] = (
    # Table I (means of ten runs): Linpack 290.8 / 290.9 / 241.3 (KVM-tuned 284.2) GFLOPS
    Published("Linpack (GFLOPS)", "matrix", 290.9 / 290.8, 241.3 / 290.8, True,
              "KVM untuned; tuned (vCPUs pinned, host CPU model): 0.98"),
    # Table I: PXZ 76.2 / 73.5 / 59.2 MB/s -- compression: integer work, our nearest is cpu
    Published("PXZ compression (MB/s)", "cpu", 73.5 / 76.2, 59.2 / 76.2, True, "KVM untuned; tuned: 0.82"),
    # Table I: STREAM triad 45.6 / 45.6 / 45.0 GB/s
    Published("STREAM triad (GB/s)", "stream", 45.6 / 45.6, 45.0 / 45.6, True),
    # Table I: RandomAccess 0.0126 / 0.0124 / 0.0125 GUPS
    Published("RandomAccess (GUPS)", "stream_random", 0.0124 / 0.0126, 0.0125 / 0.0126, True),
    # Section IV-C: every configuration reaches the 10 Gbit line rate; NAT and virtio cost CPU, not rate
    Published("TCP bulk throughput, nuttcp (Gbit/s)", "tcp_stream", 1.0, 1.0, False,
              "all at line rate; the difference is CPU per byte"),
    # Fig. 6: netperf TCP_RR; Docker with --net=host as native, with NAT and KVM ~80 % more
    Published("TCP request/response latency, netperf TCP_RR (µs)", "tcp_rr", 1.0, 1.8, False,
              "Docker --net=host; Docker NAT also ≈1.8"),
    # Fig. 8: fio 4 KiB random I/O on a SAN SSD, KVM (virtio-blk, QEMU's I/O thread) ≈ half the IOPS
    Published("fio 4 KiB random read (IOPS)", "randread", 1.0, 0.5, False),
    Published("fio 4 KiB random write (IOPS)", "randwrite", 1.0, 0.5, False),
    # Fig. 7: fio sequential 1 MiB: all near native
    Published("fio sequential read (MB/s)", "seqread", 1.0, 1.0, False),
    Published("fio sequential write (MB/s)", "seqwrite", 1.0, 1.0, False),
)


def shown(v: float | None, exact: bool) -> str:
    """A published ratio as the report shows it (≈ where read off a figure)."""
    if v is None:
        return "—"
    return f"{'' if exact else '≈'}{v:.2f}"
