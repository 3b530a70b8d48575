"""isobench fleet run on fleets of this machine (``ansible_connection=local`` hosts): the real
Ansible, the real playbook, the real harness on every host; no network at all.

Each host of such an inventory is a separate working directory and run id on this machine,
so one machine gives a fleet whose hosts can fail on their own: a doctor that refuses, a run
that refuses, an SSH host on a loopback port where nothing listens.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.fleet import manifest
from tests.conftest import require
from tests.fleetkit import (
    LONG,
    ROOT,
    TINY,
    assert_nothing_left,
    closed_port,
    fleet,
    fleet_dir,
    local_host,
    write_inventory,
)

pytestmark = [pytest.mark.privileged, pytest.mark.slow]

@pytest.fixture(autouse=True)
def _ansible() -> None:
    from harness.fleet import play

    try:
        play.tool("ansible-playbook")
        import ansible_runner  # noqa: F401
    except Exception as e:  # noqa: BLE001 - any failure to find Ansible is the same missing requirement
        require(False, f"Ansible is not installed (pip install '.[fleet]'): {e}")


def test_a_fleet_brings_every_hosts_run_back_and_leaves_nothing(tmp_path):
    inv = write_inventory(tmp_path / "inv.yml", {"alpha": local_host(), "beta": local_host()})
    (tmp_path / "s.toml").write_text(TINY)
    out = fleet(inv, tmp_path / "s.toml", "--results", tmp_path / "results")
    assert out.returncode == 0, out.stdout + out.stderr
    d = fleet_dir(out)
    data = manifest.read(d)
    assert {h: e["status"] for h, e in data["hosts"].items()} == {"alpha": "completed", "beta": "completed"}
    for host in ("alpha", "beta"):
        e = data["hosts"][host]
        run = json.loads((d / e["dir"] / "manifest.json").read_text())
        assert run["status"] == "completed" and run["run_id"] == e["run_id"]
        assert run["fleet"] == {"fleet_id": data["fleet_id"], "host": host, "address": host,
                                "connection": "local", "port": None, "user": None}
        assert run["host"]["kernel"] == os.uname().release  # what the host said of itself
        rows = [json.loads(ln) for ln in (d / e["dir"] / "samples.jsonl").read_text().splitlines()]
        assert len([r for r in rows if r["metric"] == "launch_to_ready" and r["status"] == "ok"]) == 3
        assert e["cleanup"] == "isobench cleanup: removed 0 item(s)" and e["cleanup_ok"] is True
        assert "== run: isobench run (ok, " in (d / "logs" / f"{e['dir']}.log").read_text()
    assert data["project"]["commit"] and (d / "scenario.toml").read_text() == TINY
    assert f"{data['fleet_id']}: 2 host(s): alpha, beta" in out.stdout
    assert_nothing_left(data["fleet_id"])


def test_a_host_fails_alone_with_its_reason_and_resume_repeats_only_what_is_missing(tmp_path):
    hosts = {"good": local_host(),
             "baddoctor": local_host(isobench_doctor_args="--no-probe --nosuchflag"),
             "badrun": local_host(isobench_run_args="--backends nosuchbackend"),
             "gone": {"ansible_host": "127.0.0.1", "ansible_port": closed_port(), "ansible_user": "root",
                      "ansible_ssh_common_args": "-o BatchMode=yes -o ConnectTimeout=5"}}
    inv = write_inventory(tmp_path / "inv.yml", hosts)
    (tmp_path / "s.toml").write_text(TINY)
    # a deep TMPDIR (nox's) must not push SSH's control sockets past a Unix socket's 107 bytes
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    out = fleet(inv, tmp_path / "s.toml", "--results", tmp_path / "results", env={"TMPDIR": str(deep)})
    assert out.returncode == 1, out.stdout + out.stderr
    d = fleet_dir(out)
    data = manifest.read(d)
    e = data["hosts"]
    assert e["good"]["status"] == "completed" and (d / "good" / "manifest.json").is_file()
    assert (e["baddoctor"]["status"], e["baddoctor"]["step"]) == ("failed", "doctor")
    assert "unrecognized arguments: --nosuchflag" in e["baddoctor"]["reason"]
    assert (e["badrun"]["status"], e["badrun"]["step"]) == ("failed", "run")
    assert "isobench: error: --backends: unknown backend 'nosuchbackend'" in e["badrun"]["reason"]
    assert (e["gone"]["status"], e["gone"]["step"]) == ("failed", "stage")
    assert e["gone"]["reason"].startswith("unreachable:") and "refused" in e["gone"]["reason"]
    assert not any((d / h).exists() for h in ("baddoctor", "badrun", "gone"))
    assert f"isobench fleet run --resume {data['fleet_id']}" in out.stdout
    good_before = (d / "good" / "manifest.json").stat()

    # the lab mended: the same names, now all healthy; only the three are run again
    write_inventory(inv, {h: local_host() for h in hosts})
    again = fleet("--resume", data["fleet_id"], "--results", tmp_path / "results")
    assert again.returncode == 0, again.stdout + again.stderr
    data = manifest.read(d)
    assert all(h["status"] == "completed" for h in data["hosts"].values())
    assert data["attempts"][1]["hosts"] == ["baddoctor", "badrun", "gone"]
    assert data["attempts"][0]["outcomes"]["badrun"]["step"] == "run"  # the history stays
    assert data["hosts"]["good"]["attempts"] == 1 and data["hosts"]["badrun"]["attempts"] == 2
    assert data["hosts"]["badrun"]["run_id"].endswith("-a2")
    assert (d / "good" / "manifest.json").stat().st_mtime_ns == good_before.st_mtime_ns
    assert "every host has its results" in fleet("--resume", data["fleet_id"], "--results",
                                                 tmp_path / "results").stdout
    assert_nothing_left(data["fleet_id"])


def test_ctrl_c_stops_the_runs_and_cleans_every_host_up(tmp_path):
    inv = write_inventory(tmp_path / "inv.yml", {"alpha": local_host(), "beta": local_host()})
    (tmp_path / "s.toml").write_text(LONG)
    proc = subprocess.Popen([sys.executable, "-m", "harness", "fleet", "run", str(inv), str(tmp_path / "s.toml"),
                             "--results", str(tmp_path / "results")], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    assert proc.stdout is not None
    deadline = time.monotonic() + 120
    try:
        while sum(": run…" in ln for ln in lines) < 2 and time.monotonic() < deadline:
            lines.append(proc.stdout.readline())
        time.sleep(3)  # both harnesses are measuring now
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = "".join(lines) + rest
    assert proc.returncode == 130, text
    assert "cleaning up every host" in text
    d = Path(text.strip().splitlines()[-1])
    data = manifest.read(d)
    assert data["status"] == "interrupted"
    for e in data["hosts"].values():
        assert e["status"] == "interrupted" and e["cleanup_ok"] is True, e
    assert_nothing_left(data["fleet_id"])


def test_bad_input_is_one_line_and_creates_nothing(tmp_path):
    (tmp_path / "s.toml").write_text(TINY)
    inv = write_inventory(tmp_path / "inv.yml", {"alpha": local_host()})
    results = tmp_path / "results"
    cases = [
        ((tmp_path / "nope.yml", tmp_path / "s.toml"), "no such file"),
        ((inv, tmp_path / "s.toml", "--limit", "nosuchhost"), "no host to run on"),
        ((inv, tmp_path / "missing.toml"), "missing.toml"),
        (("--resume", "../../etc"), "not a fleet id"),
        (("--resume", "20261207-153530-1a5a"), "not a fleet directory"),
        ((inv, tmp_path / "s.toml", "--forks", "0"), "--forks"),
    ]
    for argv, words in cases:
        out = fleet(*argv, "--results", results)
        assert out.returncode == 2, (argv, out.stdout, out.stderr)
        assert out.stderr.startswith("isobench") and "error:" in out.stderr.splitlines()[0], (argv, out.stderr)
        assert len(out.stderr.strip().splitlines()) == 1 and words in out.stderr, (argv, out.stderr)
        assert "Traceback" not in out.stderr
    assert not results.exists()
