"""A/B of a kernel booted with and without ``cgroup_favordynmods=1``: the cost of a cgroup attach.

    python -m tools.favordynmods_ab [--kernel 6.12] [--boots 2] [--reps 30] [--out DIR]

Boots the kernel (``harness.matrix.kernels``: a Debian series is fetched and cached) in
virtme-ng guests with pure cgroup v2, alternately without and with the boot option
(off, on, off, on, … so a drift of the host falls on both sides), and runs
``benchmarks/attach_latency.py`` in each: a cold and a hot migration through ``cgroup.procs``
and a ``clone3(CLONE_INTO_CGROUP)``.  Writes ``DIR/<mode>-<boot>.json`` (the samples and the
state the guest kernel reported), ``DIR/summary.json`` (medians with their distribution-free
95 % intervals, per mode, and the host's metadata) and prints the table.  Guests run under the
accelerator the boot probe chose (TCG on the development machine: the figures say so).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from harness.matrix import accel, guest, intests, kernels, modes
from harness.stats.quantile import quantile_ci

ROOT = Path(__file__).resolve().parents[1]
MODES = {"off": (), "on": ("cgroup_favordynmods=1",)}
METRICS = ("migrate_cold", "migrate_hot", "clone_into")


def boot(kernel: kernels.Kernel, acc: str, mode: str, index: int, out: Path, reps: int, timeout_s: float) -> Path:
    result = out / f"{mode}-{index}.json"
    g = guest.Guest(kernel.image, accel=acc, rw_dirs=(out,), cached_paths=intests.cached_paths(),
                    append=MODES[mode])
    script = (modes.prelude("v2") + f"cd {shlex.quote(str(ROOT))}\n"
              f"exec {shlex.quote(sys.executable)} -m benchmarks.attach_latency --reps {reps} "
              f"--out {shlex.quote(str(result))}\n")
    outcome = guest.run(g, script, name=f"fdm-{mode}-{index}", log=out / f"{mode}-{index}.log",
                        timeout_s=timeout_s, cwd=ROOT)
    if not outcome.ok or not result.is_file():
        raise SystemExit(f"favordynmods_ab: the {mode} guest failed (status {outcome.status}); "
                         f"see {out / f'{mode}-{index}.log'}")
    return result


def summarise(files: dict[str, list[Path]]) -> dict[str, dict[str, object]]:
    out: dict[str, dict[str, object]] = {}
    for mode, paths in files.items():
        data = [json.loads(p.read_text()) for p in paths]
        row: dict[str, object] = {"favordynmods": [d["favordynmods"]["favordynmods"] for d in data],
                                  "kernel": data[0]["kernel"]}
        for m in METRICS:
            x = np.asarray([v for d in data for v in d["samples_ns"][m]], dtype=float) / 1e6
            lo, hi = quantile_ci(x)
            row[m] = {"n": int(x.size), "median_ms": float(np.median(x)), "ci95_ms": [lo, hi]}
        out[mode] = row
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kernel", default="6.12", help="a series (6.12) or a bzImage path; 6.7+ knows the option")
    p.add_argument("--boots", type=int, default=2, help="guests per mode, alternating")
    p.add_argument("--reps", type=int, default=30, help="repetitions per guest")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per guest")
    p.add_argument("--out", type=Path, default=Path("results") / time.strftime("favordynmods-%Y%m%d-%H%M%S"))
    args = p.parse_args()
    if args.boots < 1 or args.reps < 1:
        p.error("--boots and --reps must be >= 1")
    kernel = kernels.resolve(args.kernel)
    acc = accel.verdict(kernel.image).accel
    args.out.mkdir(parents=True, exist_ok=True)
    files: dict[str, list[Path]] = {m: [] for m in MODES}
    for i in range(args.boots):
        for mode in MODES:
            files[mode].append(boot(kernel, acc, mode, i, args.out.resolve(), args.reps, args.timeout))
    from harness import metadata

    table = summarise(files)
    summary = {"kernel": kernel.release, "kernel_source": kernel.source, "guest_accelerator": acc,
               "emulated": acc == "tcg", "modes": table, "host": metadata.collect()}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1, default=str) + "\n")
    note = " (guests EMULATED under TCG: absolute figures are not a real machine's)" if acc == "tcg" else ""
    print(f"cgroup attach in {kernel.release} guests, {acc}{note}; medians [95 % interval] in ms:")
    for mode, row in table.items():
        cells = []
        for m in METRICS:
            cell: dict[str, Any] = row[m]  # type: ignore[assignment]
            lo, hi = cell["ci95_ms"]
            cells.append(f"{m} {cell['median_ms']:.3f} [{lo:.3f}–{hi:.3f}] (n={cell['n']})")
        print(f"  favordynmods {mode} (reported {row['favordynmods']}): " + "; ".join(cells))
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
