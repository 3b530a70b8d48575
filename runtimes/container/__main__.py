"""Debug entry point: ``python -m runtimes.container plan [--lowered]`` | ``run [--rw] [--zygote K] -- CMD...``."""

from __future__ import annotations

import argparse
import os
import sys

from runtimes.base import PREFIX, BackendError, LaunchSpec
from runtimes.container.backend import ContainerBackend
from runtimes.workloads import Workload


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m runtimes.container")
    sub = p.add_subparsers(dest="cmd", required=True)
    pl = sub.add_parser("plan", help="print the mount plan")
    pl.add_argument("--rw", action="store_true", help="writable root (overlay)")
    pl.add_argument("--lowered", action="store_true", help="as the native zygote's primitives (wire.py)")
    run = sub.add_parser("run", help="run a command in a container, output passed through")
    run.add_argument("--rw", action="store_true", help="writable root (overlay)")
    run.add_argument("--zygote", choices=("native", "python"), default="native", help="which zygote forks it")
    run.add_argument("command", nargs="+")
    args = p.parse_args(argv)
    backend = ContainerBackend(read_only=not args.rw, zygote=getattr(args, "zygote", "native"))
    if args.cmd == "plan":
        from runtimes.container import mounts
        from runtimes.container.launcher import wire

        print((wire.describe if args.lowered else mounts.describe)(list(backend.plan())))
        return 0
    why = backend.available()
    if why:
        print(f"container backend unavailable: {why}", file=sys.stderr)
        return 2
    spec = LaunchSpec(workload=Workload("noop"), run_id=f"dbg{os.getpid()}", instance=f"{PREFIX}-dbg{os.getpid()}-0",
                      extra={"argv": args.command, "stdio": "inherit"})
    try:
        with backend.launch(spec) as inst:
            return inst.wait(spec.timeout_s * 60)
    except BackendError as e:
        print(e, file=sys.stderr)
        return 125
    finally:
        backend.close()


if __name__ == "__main__":
    sys.exit(main())
