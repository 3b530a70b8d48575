"""isobench fleet over SSH: this machine plus two virtme-ng guests booting different kernels
(Debian's installed 6.1 and a 6.12 from its archive), reached over loopback only.

One story, to keep two emulated guests within CI's budget (~2.5 min on 2 cores under TCG): the
fleet runs, one guest is powered off in the middle of its run (and booted again at once, while
the others finish), that host alone fails with its reason, ``--resume`` completes it; then
nothing is left on any host, and every connection Ansible made went to 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.fleet import inventory, lab, manifest
from harness.matrix import leftovers
from runtimes import owners
from tests.conftest import require
from tests.fleetkit import TINY, assert_nothing_left

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.vm, pytest.mark.slow]
VICTIM = "guest-6.1"  # the faster boot of the two: it is booted twice


@pytest.fixture(scope="module")
def fleet_lab(tmp_path_factory: pytest.TempPathFactory, monkeypatch_module: pytest.MonkeyPatch) -> Iterator[lab.Lab]:
    from harness.matrix import guest

    require(guest.vng_binary() is not None, "vng (virtme-ng) is not installed")
    require(Path("/usr/sbin/sshd").exists(), "sshd is not installed (isobench doctor --fix: openssh-server)")
    # the accelerator is decided once per host and cached; a KVM probe that hangs costs 30 s a
    # kernel, more than this test's budget: these guests are told to use TCG (and say so)
    monkeypatch_module.setenv("ISOBENCH_ACCEL", "tcg")
    guests = lab.plan("6.1,6.12", cpus=1, memory_mib=1024)
    assert [g.kernel.label for g in guests] == ["6.1", "6.12"]
    assert guests[0].kernel.release != guests[1].kernel.release
    with lab.Lab(guests, local=True, keep_logs=tmp_path_factory.mktemp("consoles")) as the_lab:
        print(f"boot: {the_lab.boot_all()}")  # seconds to SSH, shown with -rP
        # a live lab's guests are a live run's: anyone's `isobench cleanup` (its QEMU sweep) spares them
        from runtimes.vm import qemu

        assert [n for _, n in qemu.find_leftovers() if "fleetlab" in n] == []
        yield the_lab
    assert leftovers.guest_processes(f"fleetlab-{os.getpid()}-") == []  # no QEMU, so no sshd of ours
    assert not (owners.OWNERS / the_lab.run_id).exists()  # its claim released
    assert not the_lab.dir.exists()


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def start_fleet(*argv: str | Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "harness", "fleet", "run", *map(str, argv)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_a_guest_powered_off_mid_run_fails_alone_and_resume_completes_it(fleet_lab, tmp_path):
    inv = fleet_lab.write_inventory(tmp_path / "lab.yml")
    hosts = inventory.read(inv)
    assert {h.name for h in hosts} == {"local", "guest-6.1", "guest-6.12"}
    assert all(h.loopback for h in hosts)
    assert {h.address for h in hosts if h.connection != "local"} == {"127.0.0.1"}
    (tmp_path / "s.toml").write_text(TINY)
    results = tmp_path / "results"

    t0 = time.monotonic()
    proc = start_fleet(inv, tmp_path / "s.toml", "--results", results, "-vvv")
    lines: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        if line.startswith(f"fleet: {VICTIM}: run…"):
            fleet_lab.power_off(VICTIM)  # the plug pulled while its harness runs
            fleet_lab.start(VICTIM)  # and booted again while the others finish
            break
    rest, _ = proc.communicate(timeout=300)
    print(f"fleet run: {time.monotonic() - t0:.0f} s")
    text = "".join(lines) + rest
    assert proc.returncode == 1, text + "\n".join(fleet_lab.state(g) for g in fleet_lab.guests)
    d = Path(text.strip().splitlines()[-1])
    data = manifest.read(d)
    e = data["hosts"]
    assert e[VICTIM]["status"] == "failed" and e[VICTIM]["step"] == "run", e[VICTIM]
    assert e[VICTIM]["reason"], e[VICTIM]
    assert e["local"]["status"] == e["guest-6.12"]["status"] == "completed", text
    kept = {h: json.loads((d / e[h]["dir"] / "manifest.json").read_text()) for h in ("local", "guest-6.12")}
    assert kept["guest-6.12"]["host"]["kernel"] == fleet_lab.guests["guest-6.12"].kernel.release
    assert kept["guest-6.12"]["host"]["cgroup"]["version"] == 2 and kept["guest-6.12"]["guest"]["accel"] == "tcg"

    print(f"{VICTIM} up again: {fleet_lab.wait_ssh(VICTIM):.0f} s after its restart")
    t0 = time.monotonic()
    again = subprocess.run([sys.executable, "-m", "harness", "fleet", "run", "--resume", data["fleet_id"],
                            "--results", str(results), "-vvv"], cwd=ROOT, capture_output=True, text=True,
                           timeout=300, check=False)
    assert again.returncode == 0, again.stdout + again.stderr + fleet_lab.state(VICTIM)
    print(f"resume: {time.monotonic() - t0:.0f} s")
    data = manifest.read(d)
    assert {h: x["status"] for h, x in data["hosts"].items()} == dict.fromkeys(e, "completed")
    assert data["attempts"][1]["hosts"] == [VICTIM]
    victim = json.loads((d / VICTIM / "manifest.json").read_text())
    assert victim["host"]["kernel"] == fleet_lab.guests[VICTIM].kernel.release != kept["guest-6.12"]["host"]["kernel"]

    # every connection Ansible made, in its own words (-vvv: "<ADDRESS> SSH: EXEC ssh … ADDRESS …")
    logs = "".join(p.read_text() for p in sorted((d / "logs").glob("ansible-*.log")))
    said = re.findall(r"^<([^>]+)> (ESTABLISH \w+ CONNECTION|SSH: EXEC|PUT|FETCH)(.*)$", logs, re.M)
    assert {kind for _, kind, _ in said} >= {"ESTABLISH SSH CONNECTION", "ESTABLISH LOCAL CONNECTION", "SSH: EXEC"}
    assert {addr for addr, _, _ in said} == {"127.0.0.1", "local"}
    ips = {ip for _, kind, rest in said if kind == "SSH: EXEC" for ip in re.findall(r"\b\d+\.\d+\.\d+\.\d+\b", rest)}
    assert ips == {"127.0.0.1"}, ips
    assert {x["address"] for x in data["hosts"].values()} == {"127.0.0.1", "local"}

    # one report across the three hosts: the findings name each one's kernel and cgroup version
    from harness import report

    md = (report.build([d], tmp_path / "report") / "report.md").read_text()
    said = md.split("## Findings", 1)[1].split("\n## ", 1)[0]
    for name, run in {**kept, VICTIM: victim}.items():
        cg = run["host"]["cgroup"]
        assert f"{name}: " in said and f"kernel {run['host']['kernel']} · cgroup v{cg['version']}" in said, said
    assert "## Across hosts" in md and "(emulated, TCG)" in md

    # nothing left: on every guest, on this machine
    for name in ("guest-6.1", "guest-6.12"):
        r = fleet_lab.ssh(name, f"ls -d /tmp/isobench-fleet-{data['fleet_id']}* 2>/dev/null; cd {ROOT} && "
                                f"{sys.executable} -m harness cleanup --run-id fleet-{data['fleet_id']}")
        assert r.stdout.strip() == "isobench cleanup: removed 0 item(s)", (name, r.stdout, r.stderr)
    assert_nothing_left(data["fleet_id"])
