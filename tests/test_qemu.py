"""The qemu peer: the vm backend's guest, by qemu-system-x86_64 directly."""

from __future__ import annotations

import os
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import runtimes
from runtimes import exits, owners
from runtimes.base import LaunchSpec, Limits, now_ns
from runtimes.vm import domain, host, qemu
from runtimes.vm.machine import Machine
from runtimes.workloads import Workload
from tests.conftest import isobench_cgroups, require

MACHINE = Machine(name="isobench-unit-0", accel="tcg", kernel="/k/vmlinux", initrd="/k/initrd.img",
                  cmdline="console=ttyS0 quiet panic=-1", vcpus=2, memory_mib=192, cpu_quota=0.5,
                  labels=(("run_id", "unit"),))


def _opt(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def test_argv_boots_what_the_domain_xml_describes() -> None:
    argv = qemu.qemu_argv(MACHINE, "/usr/bin/qemu-system-x86_64")
    dom = ET.fromstring(domain.render(MACHINE))
    os_el = dom.find("os")
    assert os_el is not None
    assert _opt(argv, "-kernel") == os_el.findtext("kernel")
    assert _opt(argv, "-initrd") == os_el.findtext("initrd")
    assert _opt(argv, "-append") == os_el.findtext("cmdline")
    assert _opt(argv, "-machine").split(",")[0] == os_el.find("type").get("machine")  # type: ignore[union-attr]
    assert _opt(argv, "-accel") == ("kvm" if dom.get("type") == "kvm" else "tcg")
    assert _opt(argv, "-m") == dom.findtext("memory") and dom.find("memory").get("unit") == "MiB"  # type: ignore[union-attr]
    assert _opt(argv, "-smp").split(",")[0] == dom.findtext("vcpu")
    # one serial console and nothing else (-nodefaults: no NIC, VGA, USB, floppy...)
    assert "-nodefaults" in argv and _opt(argv, "-display") == "none"
    devices = [_opt(argv[i:], "-device") for i, a in enumerate(argv) if a == "-device"]
    assert len(devices) == 1 and devices[0].startswith("isa-serial,")
    assert len(dom.findall("devices/serial")) == 1
    # <on_reboot>destroy</on_reboot>; ACPI on (<features><acpi/>), so poweroff ends QEMU
    assert "-no-reboot" in argv and "-no-shutdown" not in argv
    assert dom.find("features/acpi") is not None and "acpi=off" not in _opt(argv, "-machine")
    assert _opt(argv, "-name").split(",")[0] == MACHINE.name


def test_argv_follows_accel_and_acpi() -> None:
    kvm = Machine(**{**MACHINE.__dict__, "accel": "kvm", "acpi": False})
    argv = qemu.qemu_argv(kvm, "qemu")
    assert _opt(argv, "-accel") == "kvm" and _opt(argv, "-cpu").startswith("host")
    assert "acpi=off" in _opt(argv, "-machine")


def test_leftover_matching_only_takes_our_own_qemu() -> None:
    ours = ["qemu-system-x86_64", "-name", "isobench-r1-3,debug-threads=on", "-m", "256"]
    libvirts = ["qemu-system-x86_64", "-name", "guest=isobench-r1-3,debug-threads=on"]
    assert qemu._name_arg(ours) == "isobench-r1-3"
    assert not qemu._name_arg(libvirts).startswith("isobench-")  # type: ignore[union-attr]
    assert qemu._name_arg(["qemu-system-x86_64", "-m", "256"]) is None


def test_guest_report_adds_memory_in_mib() -> None:
    r = qemu.guest_report({"guest_mem_total_kib": "204800", "guest_mem_available_kib": "153600",
                           "other": "x"}, "tcg")
    assert r["guest_mem_total"] == "200.0" and r["guest_mem_used"] == "50.0" and r["accel"] == "tcg"
    assert "other" not in r


def test_guest_report_computes_cpu_at_full_precision() -> None:
    """The runtime computes the guest's view once; the measurement stores it as is."""
    report = {"guest_cpu_busy_s": "1.00", "guest_uptime_workload": "4.00", "guest_uptime_exit": "7.00"}
    assert float(qemu.guest_report(report, None)["guest_cpu_delivered"]) == 1 / 3
    assert "guest_cpu_delivered" not in qemu.guest_report({"guest_cpu_busy_s": "1.50"}, None)
    assert "guest_cpu_delivered" not in qemu.guest_report({**report, "guest_uptime_exit": "4.00"}, None)
    mem = qemu.guest_report({"guest_mem_total_kib": "1000", "guest_mem_available_kib": "1"}, None)
    assert float(mem["guest_mem_total"]) == 1000 / 1024 and float(mem["guest_mem_used"]) == 999 / 1024


# -- real guests ----------------------------------------------------------------------


def _backend() -> qemu.QemuBackend:
    require(shutil.which("qemu-system-x86_64") is not None, "qemu-system-x86 not installed")
    require(host.find_kernel() is not None, "no guest kernel (linux-image-amd64)")
    b = runtimes.get("qemu")
    reason = b.available()
    require(reason is None, f"qemu: {reason}")
    return b  # type: ignore[return-value]


def _qemu_left(name: str) -> list[str]:
    left = [n for _, n in qemu.find_leftovers() if n == name]
    return left + [d for d in isobench_cgroups() if os.path.basename(d) == name]


@pytest.mark.vm
@pytest.mark.slow
def test_noop_guest_reports_ready_exit_and_phases(run_id: str, tmp_path, monkeypatch, no_leftovers) -> None:
    b = _backend()
    b.prepare()  # the accelerator probe (a fresh host has no cached verdict) opens logs of its own
    spec = LaunchSpec(Workload("noop"), run_id, f"isobench-{run_id}-0", timeout_s=180, log_dir=str(tmp_path))
    opened: list[int] = []
    real_logs = qemu.QemuLogs

    def logs(s: LaunchSpec, *args: object) -> qemu.QemuLogs:
        opened.append(now_ns())
        return real_logs(s, *args)

    monkeypatch.setattr(qemu, "QemuLogs", logs)
    ev = exits.ExitEvents()  # when QEMU ends (power-off or kill), on the kernel's clock
    try:
        with b.launch(spec) as inst:
            inst.wait_ready(180)
            assert inst.wait(180) == 0
            assert inst.accel == b.verdict().accel
            assert inst.proc is not None
            qemu_pid = inst.proc.pid
        t = inst.times
        t_qemu_end = ev.exit_of(qemu_pid, t.t_launch)  # type: ignore[arg-type]
    finally:
        ev.close()
    assert len(opened) == 1 and opened[0] < t.t_launch  # type: ignore[operator]
    assert t.t_launch < t.t_ready <= t.t_exit <= t.t_clean
    # t_exit is the guest's EXIT line, before the guest is gone (power-off is teardown)
    assert t.t_exit == inst.t_exit_line and t_qemu_end is not None and t.t_exit < t_qemu_end <= t.t_clean
    assert {"guest_firmware", "guest_kernel", "guest_init"} <= set(t.phases)
    report = inst.guest_report()
    assert float(report["guest_mem_total"]) > 100  # a 256 MiB guest
    assert b.metadata()["accel"] in ("kvm", "tcg")
    assert _qemu_left(spec.instance) == []
    # the console log is kept (the guest spoke); QEMU's stderr log only if QEMU wrote to it
    assert inst.log_path is not None and Path(inst.log_path).stat().st_size > 0
    assert [f.name for f in tmp_path.iterdir() if f.stat().st_size == 0] == []


@pytest.mark.vm
@pytest.mark.slow
def test_cpu_quota_cgroup_and_leftover_sweep(run_id: str, no_leftovers) -> None:
    b = _backend()
    spec = LaunchSpec(Workload("idle"), run_id, f"isobench-{run_id}-1", Limits(cpu_quota=1.5), timeout_s=180)
    inst = b.launch(spec)
    try:
        inst.wait_ready(180)
        assert inst.cgroup is not None and inst.processes()
        assert inst.processes()[0] in inst.cgroup.pids()
        if inst.cgroup.version == 1:
            assert (inst.cgroup.dirs["cpu"] / "cpu.cfs_quota_us").read_text().strip() == "150000"
        assert "cpu_usage_ns" in inst.usage()
        # a crashed harness: the sweep finds this QEMU by its -name and kills only it
        pid = inst.processes()[0]
        assert qemu.cleanup_leftovers(run_id) == []  # while its harness (this process) lives
        owners.release(run_id)  # ... as if it were gone
        assert qemu.cleanup_leftovers(run_id) == [f"qemu {spec.instance} (pid {pid})"]
        assert inst.wait(30) == -9
    finally:
        inst.cleanup()
        inst.cleanup()
    assert _qemu_left(spec.instance) == []
