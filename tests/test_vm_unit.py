"""Pure logic of the vm backend: XML rendering, the accelerator decision, images, host config."""

from __future__ import annotations

import io
import os
import shutil
import stat
import subprocess
import threading
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from runtimes.base import BackendError, LaunchSpec, Limits, Timestamps
from runtimes.vm import accel, domain, host, image, kernel, machine
from runtimes.workloads import Workload
from tests.conftest import require


def spec(**kw) -> LaunchSpec:
    base = dict(workload=Workload("noop"), run_id="r1", instance="isobench-r1-0")
    base.update(kw)
    return LaunchSpec(**base)


def render(accel_name: str = "tcg", **kw) -> ET.Element:
    m = machine.describe(spec(**kw), accel=accel_name, kernel="/k/vmlinux", initrd="/i/initrd.img")
    return ET.fromstring(domain.render(m))


# -- domain XML -------------------------------------------------------------------------


def test_domain_is_minimal_direct_kernel_boot():
    d = render(vcpus=2, guest_memory_mib=384)
    assert d.get("type") == "qemu"
    assert d.findtext("name") == "isobench-r1-0"
    assert d.find("memory").text == "384" and d.find("memory").get("unit") == "MiB"
    assert d.findtext("vcpu") == "2"
    assert d.findtext("os/kernel") == "/k/vmlinux"
    assert d.findtext("os/initrd") == "/i/initrd.img"
    assert "console=ttyS0" in d.findtext("os/cmdline")
    assert d.find("os/type").get("machine") == "pc"
    assert d.find("features/acpi") is not None
    for event in ("on_poweroff", "on_reboot", "on_crash"):
        assert d.findtext(event) == "destroy"
    devices = d.find("devices")
    tags = sorted(el.tag for el in devices)
    assert tags == ["console", "controller", "memballoon", "serial"]
    assert devices.find("serial").get("type") == "pty"
    assert devices.find("console/target").get("type") == "serial"
    assert devices.find("controller").get("model") == "none"
    assert devices.find("memballoon").get("model") == "none"
    assert d.find("cputune") is None
    assert d.find("cpu") is None  # TCG: the emulator's default CPU model


def test_domain_kvm_uses_host_cpu():
    d = render("kvm")
    assert d.get("type") == "kvm"
    assert d.find("cpu").get("mode") == "host-passthrough"


@pytest.mark.parametrize(("quota", "vcpus", "period", "expected"), [
    (0.5, 1, 100_000, 50_000),
    (1.5, 2, 100_000, 150_000),  # the whole guest, not per vCPU
    (2.0, 4, 50_000, 100_000),
    (0.001, 1, 100_000, 1000),  # libvirt's minimum
])
def test_cputune_total_equals_requested_cpus(quota, vcpus, period, expected):
    d = render(vcpus=vcpus, limits=Limits(cpu_quota=quota, cpu_period_us=period))
    tune = d.find("cputune")
    assert tune.findtext("global_period") == str(period)
    assert tune.findtext("global_quota") == str(expected)
    assert tune.find("quota") is None and tune.find("period") is None


def test_cpu_weight_becomes_the_domain_shares():
    tune = render(limits=Limits(cpu_quota=0.5, cpu_weight=10_000)).find("cputune")
    assert tune.findtext("shares") == str(102_400) and tune.findtext("global_quota") == "50000"
    assert render(limits=Limits(cpu_weight=100)).find("cputune").findtext("shares") == "1024"


def test_cpu_burst_is_refused_not_dropped():
    with pytest.raises(BackendError, match="no CFS burst"):
        render(limits=Limits(cpu_quota=0.5, cpu_burst_us=50_000))


def test_metadata_labels_round_trip():
    xml = domain.render(machine.describe(spec(run_id="abc", instance="isobench-abc-3"),
                                         accel="tcg", kernel="/k", initrd="/i"))
    assert domain.labels(xml) == {"run_id": "abc", "workload": "noop"}
    assert domain.labels("<domain><name>other</name></domain>") is None
    assert domain.labels("not xml") is None


@pytest.mark.parametrize(("kw", "message"), [
    (dict(vcpus=0), "at least 1 vCPU"),
    (dict(guest_memory_mib=16), "guest memory"),
    (dict(limits=Limits(cpu_quota=0)), "cpu quota"),
    (dict(limits=Limits(cpu_quota=1, cpu_period_us=10)), "cpu period"),
])
def test_bad_specs_are_refused_in_one_line(kw, message):
    with pytest.raises(BackendError, match=message) as e:
        machine.describe(spec(**kw), accel="tcg", kernel="/k", initrd="/i")
    assert "\n" not in str(e.value)


def test_unknown_accelerator_is_refused():
    with pytest.raises(BackendError, match="unknown accelerator"):
        machine.describe(spec(), accel="hvf", kernel="/k", initrd="/i")


# -- accelerator decision ---------------------------------------------------------------


def test_decide_kvm_when_the_probe_boots():
    v = accel.decide(None, accel.ProbeResult(True, 0.8))
    assert v.accel == "kvm" and "0.80 s" in v.reason and v.probe_s == 0.8


def test_decide_tcg_when_the_probe_times_out():
    v = accel.decide(None, accel.ProbeResult(False, 20.3, "no ready marker within 20 s"), timeout_s=20)
    assert v.accel == "tcg"
    assert "did not boot" in v.reason and "no ready marker within 20 s" in v.reason
    assert v.probe_s == 20.3


def test_decide_tcg_without_kvm_device_and_without_probe():
    v = accel.decide("/dev/kvm: No such file or directory", None)
    assert v.accel == "tcg" and "No such file" in v.reason and v.probe_s is None


def test_decide_forced_and_bad_input():
    assert accel.decide(None, None, forced="kvm").accel == "kvm"
    with pytest.raises(ValueError, match="unknown accelerator"):
        accel.decide(None, None, forced="xen")
    with pytest.raises(ValueError, match="needs a probe"):
        accel.decide(None, None)


def test_resolve_probes_once_then_uses_the_cache(tmp_path, monkeypatch):
    monkeypatch.delenv("ISOBENCH_ACCEL", raising=False)
    calls = []

    def probe(timeout):
        calls.append(timeout)
        return accel.ProbeResult(False, timeout, "")

    dev = tmp_path / "kvm"
    dev.write_text("")  # stands in for an openable /dev/kvm
    key = {"host": "h", "host_kernel": "k", "qemu": "7.2", "guest_kernel": "g"}
    first = accel.resolve(cache=tmp_path, key=key, probe=probe, timeout_s=3, kvm_device=str(dev))
    second = accel.resolve(cache=tmp_path, key=key, probe=probe, timeout_s=3, kvm_device=str(dev))
    assert first.accel == second.accel == "tcg"
    assert not first.cached and second.cached and calls == [3]
    assert second.reason == first.reason
    other = accel.resolve(cache=tmp_path, key={**key, "qemu": "8.0"}, probe=probe, kvm_device=str(dev))
    assert not other.cached and len(calls) == 2  # a new QEMU is probed again
    accel.resolve(cache=tmp_path, key=key, probe=probe, refresh=True, kvm_device=str(dev))
    assert len(calls) == 3
    missing = accel.resolve(cache=tmp_path, key=key, probe=probe, kvm_device=str(tmp_path / "nope"))
    assert missing.accel == "tcg" and len(calls) == 3
    monkeypatch.setenv("ISOBENCH_ACCEL", "kvm")
    assert accel.resolve(cache=tmp_path, key=key, probe=probe, kvm_device=str(dev)).accel == "kvm"


# -- images -----------------------------------------------------------------------------


def _list_cpio(data: bytes) -> list[str]:
    cpio = shutil.which("cpio")
    require(cpio is not None, "cpio (apt-get install cpio)")
    out = subprocess.run([cpio, "-it", "--quiet"], input=data, capture_output=True, check=True)
    return out.stdout.decode().split()


def test_newc_archive_reads_back_with_cpio(tmp_path):
    root = tmp_path / "tree"
    (root / "usr" / "bin").mkdir(parents=True)
    (root / "usr" / "bin" / "tool").write_bytes(b"#!/bin/sh\n")
    (root / "bin").symlink_to("usr/bin")
    buf = io.BytesIO()
    image.write_newc(buf, list(image.tree_entries(root)) + image.run_entries(["/bin/busybox", "true"]))
    names = _list_cpio(buf.getvalue())
    assert names == ["bin", "usr", "usr/bin", "usr/bin/tool", "isobench", "isobench/run"]
    assert len(buf.getvalue()) % 4 == 0


def test_tree_entries_keep_modes_and_links(tmp_path):
    (tmp_path / "d").mkdir()
    f = tmp_path / "d" / "x"
    f.write_bytes(b"abc")
    f.chmod(0o750)
    (tmp_path / "link").symlink_to("/d/x")
    (tmp_path / ".complete").write_text("bookkeeping")
    entries = {e.name: e for e in image.tree_entries(tmp_path)}
    assert set(entries) == {"d", "d/x", "link"}
    assert stat.S_IMODE(entries["d/x"].mode) == 0o750 and entries["d/x"].data == b"abc"
    assert stat.S_ISLNK(entries["link"].mode) and entries["link"].data == b"/d/x"


def test_run_file_execs_the_workload_command():
    entries = image.run_entries(Workload("noop").argv())
    run = entries[-1].data.decode()
    assert run.startswith("exec /bin/busybox sh -c ")
    assert "ISOBENCH READY" in run
    with_applets = image.run_entries(["ls", "/"], applets=True)[-1].data.decode()
    assert "--install -s /isobench/bin" in with_applets and with_applets.endswith("exec ls /\n")


def test_init_runs_the_workload_with_the_console_on_fd3():
    assert image.INIT.startswith("#!/bin/busybox sh")
    assert "/isobench/run 3>/dev/ttyS0" in image.INIT
    assert 'echo "ISOBENCH EXIT $rc"' in image.INIT
    assert "poweroff -f" in image.INIT
    # the first line out is the init timestamp the phase breakdown hangs on
    assert image.INIT.index("guest_uptime_init") < image.INIT.index("mount -t sysfs")


def test_compression_follows_the_kernel_config(tmp_path):
    cfg = tmp_path / "config"
    cfg.write_text("CONFIG_RD_GZIP=y\n# CONFIG_RD_ZSTD is not set\n")
    assert image.kernel_compressions(cfg) == {"gzip", "none"}
    assert image.choose_compression(cfg) == "gzip"
    cfg.write_text("# nothing\n")
    assert image.choose_compression(cfg) == "none"
    assert "zstd" in image.kernel_compressions(None)


# -- kernels ----------------------------------------------------------------------------


def test_pvh_note_detection_on_a_synthetic_elf():
    import struct

    def elf_with_note(name: bytes, ntype: int) -> bytes:
        desc = b"\0" * 4
        note = struct.pack("<III", len(name) + 1, len(desc), ntype) + name + b"\0" * (4 - len(name) % 4) + desc
        ehdr = bytearray(64)
        ehdr[:5] = b"\x7fELF\x02"
        struct.pack_into("<Q", ehdr, 0x20, 64)  # e_phoff
        struct.pack_into("<HH", ehdr, 0x36, 56, 1)  # e_phentsize, e_phnum
        phdr = struct.pack("<IIQQQQQQ", 4, 0, 64 + 56, 0, 0, len(note), len(note), 4)
        return bytes(ehdr) + phdr + note

    assert kernel.has_pvh_entry(elf_with_note(b"Xen", 18))
    assert not kernel.has_pvh_entry(elf_with_note(b"Xen", 5))
    assert not kernel.has_pvh_entry(elf_with_note(b"GNU", 18))
    assert not kernel.has_pvh_entry(b"MZ not an elf")


def test_bzimage_payload_rejects_other_files():
    with pytest.raises(ValueError, match="not a bzImage"):
        kernel.bzimage_payload(b"\0" * 4096)
    with pytest.raises(BackendError, match="unknown kernel format"):
        kernel.boot_kernel("/nonexistent", "uimage", Path("/tmp"))


def test_distro_kernel_unpacks_to_a_pvh_vmlinux(tmp_path):
    src = host.find_kernel()
    require(src is not None, "a guest kernel in /boot (apt-get install linux-image-amd64)")
    bk = kernel.boot_kernel(src, "vmlinux", tmp_path)
    if bk.format == "bzimage":  # a kernel without CONFIG_PVH: said, not hidden
        assert "no vmlinux" in bk.note
        return
    assert bk.source == src and Path(bk.path).parent == tmp_path
    assert kernel.has_pvh_entry(Path(bk.path).read_bytes())
    assert stat.S_IMODE(os.stat(bk.path).st_mode) == 0o644
    assert kernel.boot_kernel(src, "vmlinux", tmp_path).path == bk.path  # cached
    assert kernel.boot_kernel(src, "bzimage", tmp_path).path == src


# -- host configuration -----------------------------------------------------------------

V1_DELEGATED = "4:memory:/process_api/abc\n1:cpu:/\n0::/\n"
V1_ROOT = "4:memory:/\n1:cpu:/\n0::/\n"
V2_ONLY = "0::/user.slice/x.scope\n"


def test_memory_exclusion_only_for_a_delegated_v1_memory_cgroup():
    assert host.memory_controller_needs_excluding(V1_DELEGATED)
    assert not host.memory_controller_needs_excluding(V1_ROOT)
    assert not host.memory_controller_needs_excluding(V2_ONLY)


def test_rewrite_controllers_is_idempotent():
    default = '# comment\n#cgroup_controllers = [ "cpu", "devices", "memory" ]\n'
    once = host.rewrite_controllers(default)
    assert once.startswith(default)
    assert 'cgroup_controllers = [ "cpu", "devices", "blkio", "cpuset", "cpuacct" ]' in once
    assert host.rewrite_controllers(once) == once
    with_memory = 'x = 1\ncgroup_controllers = [ "cpu", "memory", "devices" ]\ny = 2\n'
    assert host.rewrite_controllers(with_memory) == 'x = 1\ncgroup_controllers = [ "cpu", "devices" ]\ny = 2\n'
    custom = 'cgroup_controllers = [ "cpu" ]\n'
    assert host.rewrite_controllers(custom) == custom


def test_configure_libvirt_edits_a_config_once(tmp_path, monkeypatch):
    monkeypatch.setattr(host, "memory_controller_needs_excluding", lambda *a: True)
    monkeypatch.setattr(host, "daemon_running", lambda name: False)
    conf = tmp_path / "qemu.conf"
    conf.write_text('#cgroup_controllers = [ "cpu", "devices", "memory" ]\n')
    assert len(host.configure_libvirt(conf)) == 1
    assert host.configure_libvirt(conf) == []
    assert host.controllers_configured(conf)
    assert host.configure_libvirt(tmp_path / "missing.conf")[0].startswith(str(tmp_path / "missing.conf"))


def test_find_kernel_prefers_the_environment_and_sorts_versions(tmp_path, monkeypatch):
    k = tmp_path / "vmlinuz-custom"
    k.write_bytes(b"")
    monkeypatch.setenv("ISOBENCH_VM_KERNEL", str(k))
    assert host.find_kernel() == str(k)
    monkeypatch.setenv("ISOBENCH_VM_KERNEL", str(tmp_path / "missing"))
    assert host.find_kernel() is None
    names = ["vmlinuz-6.1.0-9-amd64", "vmlinuz-6.1.0-56-amd64", "vmlinuz-5.10.0-30-amd64"]
    assert max(names, key=host._version_key) == "vmlinuz-6.1.0-56-amd64"
    assert host.kernel_config("/boot/vmlinuz-none") is None


# -- helpers of the backend ---------------------------------------------------------------


def test_domain_cgroup_is_the_parent_of_the_emulator_thread_group():
    pytest.importorskip("libvirt")
    from runtimes.vm.connection import version_string
    from runtimes.vm.machine_cgroup import _domain_cgroup

    v1 = "4:memory:/process_api/x\n1:cpu:/machine/qemu-5-isobench-a.libvirt-qemu/emulator\n0::/\n"
    assert _domain_cgroup(v1, "cpu") == "/machine/qemu-5-isobench-a.libvirt-qemu"
    assert _domain_cgroup(v1, "pids") is None
    v2 = "0::/machine.slice/machine-qemu.scope/libvirt/vcpu0\n"
    assert _domain_cgroup(v2, "") == "/machine.slice/machine-qemu.scope/libvirt"
    assert version_string(9000000) == "9.0.0" and version_string(7002022) == "7.2.22"


# -- GuestInstance.wait: the end-of-guest event may overtake the console reader ----------------


def test_wait_lets_the_console_reader_deliver_exit_after_the_stopped_event():
    from runtimes.vm.guest import GuestInstance

    release = threading.Event()

    class Guest(GuestInstance):
        chunks = [b"ISOBENCH READY\n", b"ISOBENCH EXIT 7\n"]

        def _read_console(self) -> bytes:
            if len(self.chunks) == 1:  # the EXIT line is still on its way when the guest "stops"
                self._ended.set()  # what libvirt's STOPPED event does, from another thread
                release.wait(5)
            return self.chunks.pop(0) if self.chunks else b""

        def _write_console(self, data: bytes) -> None:
            pass

        def _boot_start(self) -> int | None:
            return None

        def _ended_without_status(self) -> int:
            raise BackendError("ended without status")

        def processes(self) -> list[int]:
            return []

        def stop(self) -> None:
            pass

        def _teardown(self) -> None:
            pass

    m = machine.describe(spec(), accel="tcg", kernel="/k/vmlinux", initrd="/i/initrd.img")
    g = Guest(spec(), m, Timestamps())
    g._reader = threading.Thread(target=g._pump, daemon=True)
    g._reader.start()
    assert g._ended.wait(5)
    threading.Timer(0.05, release.set).start()
    assert g.wait(5) == 7
    assert g.times.t_exit == g.t_exit_line is not None
