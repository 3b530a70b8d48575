"""isobench fleet, the pure parts: inventory listing, host names, events, manifest, hostile archives."""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from harness.errors import UserError
from harness.fleet import bundle, events, inventory, leftovers, manifest
from harness.fleet.unpack import MAX_BYTES, UnsafeArchive, extract_run

# -- inventory -----------------------------------------------------------------------------

LISTING = {
    "_meta": {"hostvars": {
        "here": {"ansible_connection": "local", "isobench_python": "/venv/bin/python"},
        "g61": {"ansible_host": "127.0.0.1", "ansible_port": 2222, "ansible_user": "root",
                "isobench_guest": {"accel": "tcg"}, "unrelated": 1},
        "far": {"ansible_host": "192.0.2.7"},
    }},
    "all": {"children": ["ungrouped", "local", "guests"]},
    "ungrouped": {"hosts": ["far"]},
    "local": {"hosts": ["here"]},
    "guests": {"hosts": ["g61"], "children": ["guests"]},  # a cycle must not hang the walk
}


def test_inventory_hosts_come_in_ansibles_order_with_their_connection_details():
    hosts = inventory.parse(LISTING)
    assert [h.name for h in hosts] == ["far", "here", "g61"]
    g61 = hosts[2]
    assert (g61.address, g61.port, g61.user, g61.connection) == ("127.0.0.1", 2222, "root", "ssh")
    assert g61.fleet_vars == {"isobench_guest": {"accel": "tcg"}}  # only the fleet's own variables
    assert hosts[0].address == "192.0.2.7" and hosts[0].connection == "ssh"


def test_loopback_means_a_local_connection_or_a_loopback_address():
    by_name = {h.name: h for h in inventory.parse(LISTING)}
    assert by_name["here"].loopback and by_name["g61"].loopback
    assert not by_name["far"].loopback
    assert inventory.Host("x", "::1", "ssh").loopback
    assert not inventory.Host("localhost-ish", "example.org", "ssh").loopback  # names are not trusted


def test_host_directories_are_safe_and_distinct():
    names = ["web01.lab", "../etc", "a b", "a_b", "", "x" * 200]
    dirs = inventory.slugs(names)
    assert dirs["web01.lab"] == "web01.lab"
    assert dirs["../etc"] == "etc"
    assert dirs["a b"] == "a_b" and dirs["a_b"] == "a_b-2"
    assert dirs[""] == "host"
    assert len(dirs["x" * 200]) <= 60
    assert len(set(dirs.values())) == len(names)
    assert all("/" not in d and not d.startswith(".") for d in dirs.values())
    ids = inventory.slugs(["guest-6.1", "guest_6.1", "web", "web-a1", "y" * 200], in_run_id=True)
    assert ids["guest-6.1"] == "guest_6.1" and ids["guest_6.1"] == "guest_6.1_2"
    assert not any("-" in i for i in ids.values()) and len(ids["y" * 200]) <= 30
    assert len(set(ids.values())) == 5


# -- events --------------------------------------------------------------------------------

def ev(kind: str, host: str, task: str, **data: object) -> dict[str, object]:
    return {"event": kind, "event_data": {"host": host, "task": task, **data}}


def test_tracker_reports_steps_and_takes_the_harness_words_as_the_reason():
    t = events.Tracker(["a", "b"])
    assert t.feed(ev("runner_on_start", "a", "run: isobench run")) == "a: run…"
    assert t.feed(ev("runner_on_start", "a", "run: isobench run")) is None  # once per step
    line = t.feed(ev("runner_on_failed", "a", "run: isobench run", duration=2.5,
                     res={"rc": 2, "stdout": "x\n", "stderr": "noise\nisobench: error: scenario: bad key\n"
                                                                "Shared connection to 127.0.0.1 closed.\n"}))
    assert line == "a: run FAILED: exit 2: isobench: error: scenario: bad key"
    assert t.hosts["a"].failed_step == "run"
    assert t.hosts["a"].log[-1].startswith("== run: isobench run (failed, 2.5 s)")
    assert "isobench: error" in t.hosts["a"].log[-1]
    assert t.feed(ev("runner_on_ok", "zzz", "run: x")) is None  # a host not ours
    assert t.hosts["b"].failed_step is None


def test_unreachable_is_a_failure_of_the_step_it_happened_in():
    t = events.Tracker(["g"])
    t.feed(ev("runner_on_start", "g", "stage: copy"))
    t.feed(ev("runner_on_unreachable", "g", "stage: copy",
              res={"msg": "Failed to connect to the host via ssh: Connection refused"}))
    p = t.hosts["g"]
    assert (p.failed_step, p.reason) == ("stage", "unreachable: Failed to connect to the host via ssh: "
                                                  "Connection refused")


def test_the_first_failure_stays_the_reason_and_cleanup_is_reported_apart():
    t = events.Tracker(["h"])
    t.feed(ev("runner_on_failed", "h", "doctor: isobench doctor --fix", res={"rc": 1, "stdout": "[FAIL] root"}))
    t.feed(ev("runner_on_failed", "h", "cleanup: x", res={"msg": "boom"}))
    p = t.hosts["h"]
    assert p.failed_step == "doctor" and p.reason == "exit 1: [FAIL] root"
    assert (p.cleanup, p.cleanup_ok) == ("boom", False)
    t2 = events.Tracker(["h"])
    t2.feed(ev("runner_on_ok", "h", "cleanup: x", res={"stdout": "isobench cleanup: removed 0 item(s)\n"}))
    assert (t2.hosts["h"].cleanup, t2.hosts["h"].cleanup_ok) == ("isobench cleanup: removed 0 item(s)", True)


def test_ignored_failures_and_unnamed_tasks_do_not_fail_a_host():
    t = events.Tracker(["h"])
    t.feed(ev("runner_on_failed", "h", "run: x", ignore_errors=True, res={"msg": "meh"}))
    assert t.hosts["h"].failed_step is None
    assert events.step_of("Gathering Facts") == "" and events.step_of("fetch: the archive") == "fetch"
    assert t.feed(ev("runner_on_skipped", "h", "python: a venv")).startswith("h: python: skipped")  # type: ignore[union-attr]


# -- manifest --------------------------------------------------------------------------------

def test_fleet_ids_are_checked_before_use():
    assert manifest.resolve_id("20261207-153530-1a5a") == "20261207-153530-1a5a"
    assert manifest.resolve_id("results/fleet-20261207-153530-1a5a/") == "20261207-153530-1a5a"
    for bad in ("../../etc", "fleet-x", "20261207-153530-1a5a/../x", ""):
        with pytest.raises(UserError):
            manifest.resolve_id(bad)


def test_resume_repeats_every_host_without_results_and_only_those(tmp_path):
    data = manifest.new("20261207-153530-1a5a", inventory="i")
    manifest.host_entry(data, "a")["status"] = "completed"
    manifest.host_entry(data, "b")["status"] = "failed"
    manifest.host_entry(data, "c")["status"] = "interrupted"
    assert manifest.to_repeat(data, ["a", "b", "c", "new"]) == ["b", "c", "new"]
    manifest.write(tmp_path, data)
    assert manifest.read(tmp_path)["hosts"]["a"]["status"] == "completed"
    (tmp_path / manifest.FILE).write_text("{\"schema\": \"other\"}")
    with pytest.raises(UserError, match="not an isobench fleet manifest"):
        manifest.read(tmp_path)
    with pytest.raises(UserError, match="not a fleet directory"):
        manifest.read(tmp_path / "nowhere")


def test_one_fleet_run_at_a_time_per_directory(tmp_path):
    with manifest.locked(tmp_path):
        with pytest.raises(UserError, match="another isobench fleet run"):
            with manifest.locked(tmp_path):
                pass
    with manifest.locked(tmp_path):  # released
        pass


# -- hostile archives ------------------------------------------------------------------------

RUN = "fleet-20261207-153530-1a5a-g61-a1"
MANIFEST = json.dumps({"schema": "isobench/run", "schema_version": 1, "run_id": RUN, "status": "completed"})


def archive(tmp_path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]], name: str = "a.tar.gz") -> Path:
    path = tmp_path / name
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def reg(name: str, data: bytes = b"x") -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def special(name: str, kind: bytes, target: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info, None


def good_members() -> list[tuple[tarfile.TarInfo, bytes | None]]:
    d = tarfile.TarInfo(RUN)
    d.type = tarfile.DIRTYPE
    return [(d, None), reg(f"{RUN}/manifest.json", MANIFEST.encode()), reg(f"{RUN}/samples.jsonl", b"{}\n"),
            reg(f"{RUN}/logs/x.log", b"log")]


def test_a_run_archive_unpacks_as_the_host_directory(tmp_path):
    dest = extract_run(archive(tmp_path, good_members()), tmp_path / "g61", RUN)
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*")) == [
        "logs", "logs/x.log", "manifest.json", "samples.jsonl"]
    assert (dest / "manifest.json").stat().st_mode & 0o777 == 0o644
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging left


@pytest.mark.parametrize("bad, why", [
    (reg("/etc/evil"), "plain relative"),
    (reg(f"{RUN}/../../evil"), "'..'"),
    (reg("other-run/manifest.json"), "outside the run directory"),
    (special(f"{RUN}/link", tarfile.SYMTYPE, "/etc/passwd"), "a link"),
    (special(f"{RUN}/hard", tarfile.LNKTYPE, f"{RUN}/manifest.json"), "a link"),
    (special(f"{RUN}/dev", tarfile.CHRTYPE), "special file"),
    (special(f"{RUN}/fifo", tarfile.FIFOTYPE), "special file"),
    (reg(f"{RUN}/manifest.json", b"again"), "appears twice"),
    (reg(f"{RUN}\\..\\x"), "plain relative"),
])
def test_a_hostile_archive_is_refused_and_leaves_nothing(tmp_path, bad, why):
    path = archive(tmp_path, [*good_members(), bad])
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(UnsafeArchive, match=why):
        extract_run(path, out / "g61", RUN)
    assert list(out.iterdir()) == []
    assert not Path("/etc/evil").exists()


def test_an_archive_without_a_manifest_or_not_an_archive_is_refused(tmp_path):
    path = archive(tmp_path, [reg(f"{RUN}/samples.jsonl")])
    with pytest.raises(UnsafeArchive, match="not a run directory"):
        extract_run(path, tmp_path / "a", RUN)
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"\x1f\x8b\x08garbage")
    with pytest.raises(UnsafeArchive, match="not a readable archive"):
        extract_run(junk, tmp_path / "b", RUN)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tar.gz", "junk.tar.gz"]


def test_a_decompression_bomb_stops_at_the_byte_limit(tmp_path, monkeypatch):
    monkeypatch.setattr("harness.fleet.unpack.MAX_BYTES", 1000)
    path = archive(tmp_path, [*good_members(), reg(f"{RUN}/big", b"\0" * 5000)])
    with pytest.raises(UnsafeArchive, match="more than 1000 bytes"):
        extract_run(path, tmp_path / "g61", RUN)
    assert not (tmp_path / "g61").exists() and MAX_BYTES > 1000


def test_an_existing_host_directory_is_never_overwritten(tmp_path):
    (tmp_path / "g61").mkdir()
    with pytest.raises(UnsafeArchive, match="exists already"):
        extract_run(archive(tmp_path, good_members()), tmp_path / "g61", RUN)


# -- the bundle and the controller's leftovers ----------------------------------------------

def test_the_bundle_holds_the_project_and_the_scenario(tmp_path):
    scenario = tmp_path / "s.toml"
    scenario.write_text("[scenario]\nname = 'x'\n")
    b = bundle.make(tmp_path, scenario)
    with tarfile.open(b.path) as tar:
        names = tar.getnames()
        assert tar.extractfile("scenario.toml").read() == scenario.read_bytes()  # type: ignore[union-attr]
    assert "src/harness/__main__.py" in names and "src/runtimes/__init__.py" in names
    assert "src/pyproject.toml" in names
    assert not any(n.startswith(("src/tests", "src/docs", "src/results")) for n in names)
    assert b.commit is None or len(b.commit) == 40
    # the script a host runs unpacks exactly that archive
    work = tmp_path / "isobench-fleet-x"
    subprocess.run(["sh", str(b.stage), str(work)], check=True)
    assert (work / "scenario.toml").read_bytes() == scenario.read_bytes()
    assert (work / "src" / "harness" / "__main__.py").is_file() and not (work / "bundle.tar.gz").exists()
    refused = subprocess.run(["sh", str(b.stage), str(tmp_path / "elsewhere")], capture_output=True, text=True)
    assert refused.returncode == 2 and "refusing" in refused.stderr and not (tmp_path / "elsewhere").exists()


def test_stale_controller_directories_are_found_by_their_dead_pid(tmp_path):
    dead = tmp_path / "isobench-fleetctl-20261207-153530-1a5a-999999999-abc_1"
    alive = tmp_path / f"isobench-fleetctl-20261207-153530-1a5a-{os.getpid()}-abc"
    lab = tmp_path / "isobench-fleetlab-999999999-q"
    work = tmp_path / "isobench-fleet-20261207-153530-1a5a-alpha"
    work2 = tmp_path / "isobench-fleet-20261207-153530-1a5a-alphabet"
    for d in (dead, alive, lab, work, work2):
        d.mkdir()
    assert sorted(leftovers.stale_private_dirs(tmp=tmp_path)) == sorted([dead, lab])
    assert leftovers.stale_private_dirs("fleet-20261207-153530-1a5a", tmp=tmp_path) == [dead]
    assert sorted(leftovers.workdirs("fleet-20261207-153530-1a5a", tmp=tmp_path)) == [work, work2]
    assert leftovers.workdirs("fleet-20261207-153530-1a5a-alpha", tmp=tmp_path) == []  # a host's own: its cleanup.sh


def test_a_refused_archive_fails_its_host_at_unpack_and_keeps_nothing(tmp_path, capsys):
    from harness.fleet import drive
    from harness.fleet.inventory import Host

    incoming, fleet = tmp_path / "incoming", tmp_path / "fleet-x"
    incoming.mkdir()
    fleet.mkdir()
    data = manifest.new("20261207-153530-1a5a")
    e = manifest.host_entry(data, "evil", dir="evil", run_id=RUN)
    archive(incoming, [*good_members(), special(f"{RUN}/link", tarfile.SYMTYPE, "/etc/shadow")], "evil.tar.gz")
    drive._arrived(Host("evil", "127.0.0.1", "ssh"), incoming, fleet, data, "20261207-153530-1a5a")
    assert (e["status"], e["step"]) == ("failed", "unpack") and "a link" in e["reason"]
    assert list(fleet.iterdir()) == [] and list(incoming.iterdir()) == []  # nothing kept, archive gone
    assert "evil: unpack FAILED: archive refused" in capsys.readouterr().out
