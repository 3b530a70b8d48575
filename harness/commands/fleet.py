"""``isobench fleet run INVENTORY SCENARIO``: a scenario on every host of an Ansible inventory.

``fleet run`` prints a line per host and step as they happen, and last the
fleet directory (``results/fleet-<id>``), which holds one run directory per
host that completed, ``fleet.json`` (every host's status and reason) and
``logs/``.  Exit 0 when every host completed and was cleaned up, 1 otherwise,
130 on Ctrl-C (every host is cleaned up first).  ``fleet lab`` boots guests on
this machine, reachable over SSH on loopback only, writes their inventory and
runs a command (a ``fleet run``) against it: a fleet without a lab.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.cli import number
from runtimes.userpaths import check_output_dir, check_output_file

HELP = "run a scenario on every host of an Ansible inventory and bring the results back"


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="fleet_command", required=True, metavar="ACTION")
    r = sub.add_parser("run", help="run SCENARIO on every host of INVENTORY")
    r.add_argument("inventory", type=Path, nargs="?", help="an Ansible inventory (INI, YAML, a directory …)")
    r.add_argument("scenario", type=Path, nargs="?", help="scenario file (TOML)")
    r.add_argument("--limit", help="only these hosts (an Ansible host pattern: a group, a name, 'web*:!web3')")
    r.add_argument("--forks", type=number(int, 1), default=5, help="hosts worked on at once (default 5)")
    r.add_argument("--results", type=Path, default=Path("results"), help="where fleet-<id>/ goes (default results/)")
    r.add_argument("--resume", metavar="ID", help="repeat only the hosts of fleet ID that have no results")
    r.add_argument("--report", action="store_true", help="build the merged report when done")
    r.add_argument("-v", "--verbose", action="count", default=0, help="Ansible's verbosity (-vvv: connections)")
    r.set_defaults(fleet_func=_run)

    lab = sub.add_parser("lab", help="boot guests here (SSH on loopback), write their inventory, run a command")
    lab.add_argument("--kernels", default="6.1,6.12",
                     help="one guest per kernel: Debian series (6.1, 6.12) or bzImage paths; "
                          "KERNEL:v1 boots it with cgroup v1 (default v2)")
    lab.add_argument("--local", action="store_true", help="this machine joins the fleet as 'local'")
    lab.add_argument("--inventory", type=Path, required=True, help="where to write the lab's inventory (YAML)")
    lab.add_argument("--cpus", type=number(int, 1), default=1, help="vCPUs per guest (default 1)")
    lab.add_argument("--memory", type=number(int, 256), default=1024, metavar="MIB", help="guest memory (default 1024)")
    lab.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- CMD ARGS…",
                     help="run this while the guests are up (default: wait for Ctrl-C)")
    lab.set_defaults(fleet_func=_lab)


def main(args: argparse.Namespace) -> int:
    return int(args.fleet_func(args))


def _run(args: argparse.Namespace) -> int:
    from harness.fleet import drive

    check_output_dir(args.results, "--results")  # before any host is touched
    req = drive.Request(args.inventory, args.scenario, args.results, args.limit, args.forks, args.resume,
                        args.verbose)
    out = drive.run(req)
    if args.report and out.status != "interrupted":
        from harness import report
        from harness.fleet import manifest

        if manifest.completed_dirs(out.directory, manifest.read(out.directory)):  # every host's, merged
            print(f"fleet: report {report.build([out.directory], out.directory / 'report')}", flush=True)
    print(out.directory)
    return out.code


def _lab(args: argparse.Namespace) -> int:
    from harness.fleet import lab

    argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    check_output_file(args.inventory, "--inventory")  # before a guest boots
    return lab.main(args.kernels, args.inventory, args.local, args.cpus, args.memory, argv)
