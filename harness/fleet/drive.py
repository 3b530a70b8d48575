"""One ``isobench fleet run``: the scenario on every host, each host's fate in ``fleet.json``.

Everything that can be checked is checked before anything runs (the scenario,
the inventory, the ``--limit``, a ``--resume`` id).  Then one Ansible play runs
on every host at once (``--forks``); as each host's archive arrives it is
unpacked under ``fleet-<id>/<host>/``, so a host's results are kept whatever
happens to the others or to the fleet later.  A host fails alone (unreachable,
doctor, run, fetch, an archive refused): its step and reason go into the
manifest.  On Ctrl-C (or SIGTERM) the play is stopped, then every host is
cleaned up by ``cleanup.yml``; a second Ctrl-C abandons that cleanup.
``--resume ID`` runs again, with the same scenario, only the hosts without
results.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import UserError
from harness.fleet import bundle, events, inventory, manifest, play
from harness.fleet.collect import collect
from harness.fleet.inventory import Host
from harness.fleet.unpack import UnsafeArchive

SCENARIO = "scenario.toml"
LOGS = "logs"


@dataclass(frozen=True)
class Request:
    inventory: Path | None  # None: the one the resumed fleet used
    scenario: Path | None  # None with resume: the fleet's own copy
    results: Path
    limit: str | None = None
    forks: int = 5
    resume: str | None = None
    verbosity: int = 0


@dataclass(frozen=True)
class Outcome:
    directory: Path
    status: str  # completed | failed | interrupted
    code: int  # 0, 1 (a host failed or was not cleaned up), 130 (interrupted)


def say(line: str) -> None:
    print(f"fleet: {line}", flush=True)


class Interrupts:
    """Ctrl-C and SIGTERM counted, not raised: the first stops the play, the second its cleanup."""

    def __init__(self) -> None:
        self.count = 0

    @contextmanager
    def installed(self) -> Iterator[Interrupts]:
        def handler(signum: int, frame: object) -> None:
            self.count += 1
            say("interrupted: stopping the play, then cleaning every host up (Ctrl-C again to skip that)"
                if self.count == 1 else "interrupted again: leaving the cleanup")

        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for s, h in old.items():
                signal.signal(s, h)


def _prepare(req: Request) -> tuple[str, Path, dict[str, Any], Path, str | None]:
    """(fleet id, directory, manifest, inventory, limit), everything validated, nothing created yet."""
    if req.resume:
        fleet_id = manifest.resolve_id(req.resume)
        directory = manifest.fleet_dir(req.results, fleet_id)
        data = manifest.read(directory)
        if req.scenario is not None:
            raise UserError("fleet run --resume: the scenario is the fleet's own (fleet-<id>/scenario.toml); "
                            "give only the inventory, if it moved")
        inv = req.inventory or Path(str(data.get("inventory", "")))
        limit = req.limit if req.limit is not None else data.get("limit")
        return fleet_id, directory, data, inv, limit
    if req.inventory is None or req.scenario is None:
        raise UserError("fleet run: give INVENTORY and SCENARIO (or --resume ID)")
    from harness import scenario

    scenario.load(req.scenario)  # a bad scenario fails here, before any host is touched
    fleet_id = manifest.new_id()
    data = manifest.new(fleet_id, inventory=str(req.inventory.resolve()), limit=req.limit, scenario=SCENARIO,
                        scenario_source=str(req.scenario))
    return fleet_id, manifest.fleet_dir(req.results, fleet_id), data, req.inventory, req.limit


def run(req: Request) -> Outcome:
    fleet_id, directory, data, inv, limit = _prepare(req)
    hosts = inventory.read(inv, limit)
    if not req.resume:
        directory.mkdir(parents=True)
        shutil.copyfile(req.scenario, directory / SCENARIO)  # type: ignore[arg-type]
    with manifest.locked(directory):
        return _run_locked(req, fleet_id, directory, data, inv, hosts)


def _backends(directory: Path) -> list[str]:
    from harness import scenario

    return list(scenario.load(directory / SCENARIO).backends)


def _assign(data: dict[str, Any], hosts: list[Host], fleet_id: str) -> None:
    """Per host, kept across resumes: its directory, and the run id all its attempts' run ids
    start with (``fleet-<id>-<host>``; attempt n runs as ``…-a<n>``), which its cleanup sweeps."""
    names = list(data["hosts"]) + [h.name for h in hosts if h.name not in data["hosts"]]
    dirs, ids = inventory.slugs(names), inventory.slugs(names, in_run_id=True)
    for h in hosts:
        e = manifest.host_entry(data, h.name, dir=dirs[h.name], cleanup_id=f"fleet-{fleet_id}-{ids[h.name]}")
        e.update(h.describe())


def _run_locked(req: Request, fleet_id: str, directory: Path, data: dict[str, Any], inv: Path,
                hosts: list[Host]) -> Outcome:
    _assign(data, hosts, fleet_id)
    targets = [h for h in hosts if h.name in manifest.to_repeat(data, [h.name for h in hosts])]
    data["status"] = "running"
    manifest.write(directory, data)
    if not targets:
        say("every host has its results: nothing to repeat")
        return _finish(directory, data, interrupted=False)
    say(f"{fleet_id}: {len(targets)} host(s): {', '.join(h.name for h in targets)}"
        + (" (resumed)" if req.resume else ""))
    (directory / LOGS).mkdir(exist_ok=True)
    attempt = len(data["attempts"]) + 1
    record = {"n": attempt, "started": manifest.now(), "hosts": [h.name for h in targets]}
    data["attempts"].append(record)
    with tempfile.TemporaryDirectory(prefix=f"isobench-fleetctl-{fleet_id}-{os.getpid()}-",
                                     dir=play.PRIVATE_ROOT) as tmp, \
            Interrupts().installed() as interrupts:
        private = Path(tmp)
        b = bundle.make(private, directory / SCENARIO)
        data["project"] = b.describe()
        for h in targets:
            e = data["hosts"][h.name]
            e.update(status="pending", step="", reason="", attempts=int(e.get("attempts", 0)) + 1)
            e["run_id"] = f"{e['cleanup_id']}-a{e['attempts']}"
        manifest.write(directory, data)
        extravars = _extravars(data, targets, fleet_id, b, private, _backends(directory))
        log = directory / LOGS / f"ansible-{attempt}.log"
        rc = _play("bench.yml", req, inv, extravars, targets, private, log, data, directory, record,
                   cancelled=lambda: interrupts.count >= 1)
        record.update(ended=manifest.now(), ansible_rc=rc, interrupted=interrupts.count >= 1)
        if interrupts.count >= 1:
            say("cleaning up every host of this attempt…")
            _play("cleanup.yml", req, inv, extravars, targets, private, log, data, directory, record,
                  cancelled=lambda: interrupts.count >= 2)
        return _finish(directory, data, interrupted=interrupts.count >= 1)


def _extravars(data: dict[str, Any], targets: list[Host], fleet_id: str, b: bundle.Bundle, private: Path,
               backends: list[str]) -> dict[str, Any]:
    incoming = private / "incoming"
    incoming.mkdir()
    hosts = data["hosts"]
    return {"isobench_fleet_id": fleet_id, "isobench_stage": str(b.stage), "isobench_incoming": str(incoming),
            "isobench_backends": ",".join(backends),
            "isobench_slugs": {h.name: hosts[h.name]["dir"] for h in targets},
            "isobench_cleanup_ids": {h.name: hosts[h.name]["cleanup_id"] for h in targets},
            "isobench_run_ids": {h.name: hosts[h.name]["run_id"] for h in targets}}


def _play(playbook: str, req: Request, inv: Path, extravars: dict[str, Any], targets: list[Host], private: Path,
          log: Path, data: dict[str, Any], directory: Path, record: dict[str, Any],
          cancelled: Callable[[], bool]) -> int:
    tracker = events.Tracker([h.name for h in targets])
    by_name = {h.name: h for h in targets}
    incoming = Path(extravars["isobench_incoming"])

    def on_event(event: dict[str, Any]) -> None:
        line = tracker.feed(event)
        if line:
            say(line)
        host = (event.get("event_data") or {}).get("host")
        if host in by_name and tracker.hosts[host].fetched and data["hosts"][host]["status"] == "pending":
            _arrived(by_name[host], incoming, directory, data, extravars["isobench_fleet_id"])
            manifest.write(directory, data)

    p = play.Play(playbook, inv, extravars, tuple(h.name for h in targets), req.forks, req.verbosity)
    try:
        rc = play.run(p, private, on_event, cancelled, log)
    finally:
        _settle(targets, tracker, data, directory, record, interrupted=cancelled())
    return rc


def _arrived(host: Host, incoming: Path, directory: Path, data: dict[str, Any], fleet_id: str) -> None:
    e = data["hosts"][host.name]
    try:
        collect(incoming / f"{e['dir']}.tar.gz", directory / e["dir"], e["run_id"], host, fleet_id,
                data.get("project"))
    except (UnsafeArchive, OSError) as err:  # (OSError: this side, e.g. a full disk; never a traceback
        # from inside Ansible's event loop, which would leave the other hosts uncleaned)
        why = f"archive refused: {err}" if isinstance(err, UnsafeArchive) else f"cannot unpack here: {err}"
        e.update(status="failed", step="unpack", reason=why)
        say(f"{host.name}: unpack FAILED: {why}")
        return
    e.update(status="completed", step="", reason="", ended=manifest.now())
    say(f"{host.name}: results in {directory / e['dir']}")


def _settle(targets: list[Host], tracker: events.Tracker, data: dict[str, Any], directory: Path,
            record: dict[str, Any], interrupted: bool) -> None:
    """Each host's fate once a play ended (also kept in the attempt's record: a resume overwrites
    the host's own entry); its task outputs appended to ``logs/<host>.log``."""
    outcomes = record.setdefault("outcomes", {})
    for h in targets:
        p, e = tracker.hosts[h.name], data["hosts"][h.name]
        if p.cleanup_ok is not None:
            e["cleanup"], e["cleanup_ok"] = p.cleanup, p.cleanup_ok
        if e["status"] == "pending":
            if p.failed_step:
                e.update(status="failed", step=p.failed_step, reason=p.reason)
            elif interrupted:
                e.update(status="interrupted", step=p.step, reason="interrupted (Ctrl-C) before its results came")
            else:
                e.update(status="failed", step=p.step or "?", reason="the play ended before this host's results came")
        outcomes[h.name] = {k: e.get(k) for k in ("status", "step", "reason", "run_id")}
        if p.log:
            with open(directory / LOGS / f"{e['dir']}.log", "a") as fh:
                fh.write(f"#### attempt {record['n']}\n")
                fh.writelines(p.log)
    manifest.write(directory, data)


def _finish(directory: Path, data: dict[str, Any], interrupted: bool) -> Outcome:
    hosts = data["hosts"]
    failed = [h for h, e in hosts.items() if e.get("status") != "completed"]
    unclean = [h for h, e in hosts.items() if e.get("cleanup_ok") is False]
    status = "interrupted" if interrupted else ("failed" if failed else "completed")
    data.update(status=status, ended=manifest.now())
    manifest.write(directory, data)
    done = len(hosts) - len(failed)
    say(f"{len(hosts)} host(s): {done} completed, {len(failed)} not" + (f"; {len(unclean)} not cleaned up"
                                                                        if unclean else ""))
    for h in failed:
        e = hosts[h]
        print(f"  {h}: {e.get('status')} at {e.get('step') or '?'}: {e.get('reason')}", file=sys.stderr)
    for h in unclean:
        print(f"  {h}: cleanup failed: {hosts[h].get('cleanup')}", file=sys.stderr)
    if failed and not interrupted:
        say(f"to repeat what is missing: isobench fleet run --resume {data['fleet_id']}")
    code = 130 if interrupted else (1 if failed or unclean else 0)
    return Outcome(directory, status, code)
