"""Seccomp profile resolution and compilation, device rules (v1 controller, v2 BPF program), and the
OCI bundles carrying exactly what the built-in container enforces."""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import pytest

from runtimes import cgroups, rootfs
from runtimes.base import LaunchSpec, Limits
from runtimes.container.backend import ContainerBackend
from runtimes.container.devices import bpf
from runtimes.container.devices import rules as devices
from runtimes.container.security import caps, hardening, seccomp
from runtimes.oci import bundle
from runtimes.workloads import Workload
from tests.conftest import require

PROFILE = seccomp.read_profile(seccomp.DEFAULT)


def _rules_for(oci: dict, name: str) -> list[dict]:
    return [r for r in oci["syscalls"] if name in r["names"]]


# -- seccomp: pure logic ----------------------------------------------------------------
def test_default_profile_blocks_what_runc_engines_block_for_the_containers_caps() -> None:
    oci = seccomp.resolve(PROFILE, caps.OCI_DEFAULT, machine="x86_64", release="6.1.0")
    assert oci["defaultAction"] == "SCMP_ACT_ERRNO"  # everything not listed: EPERM
    assert oci["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    for blocked in ("keyctl", "add_key", "request_key", "unshare", "mount", "umount2", "setns", "bpf",
                    "perf_event_open", "kexec_load", "open_by_handle_at", "syslog", "pivot_root"):
        assert _rules_for(oci, blocked) == [], blocked
    # clone only without CLONE_NEW* flags (no nested namespaces); clone3 answers ENOSYS (libc falls back)
    (clone,) = _rules_for(oci, "clone")
    assert clone["args"] == [{"index": 0, "value": 0x7E020000, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]
    assert _rules_for(oci, "clone3") == [{"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]
    assert _rules_for(oci, "chroot") and _rules_for(oci, "mknod")  # CAP_SYS_CHROOT, CAP_MKNOD are kept


def test_resolution_follows_capabilities_architecture_and_kernel() -> None:
    admin = seccomp.resolve(PROFILE, caps.OCI_DEFAULT + ("SYS_ADMIN",), machine="x86_64", release="6.1")
    assert _rules_for(admin, "unshare") and _rules_for(admin, "mount")
    assert all("args" not in r for r in _rules_for(admin, "clone"))  # excluded for CAP_SYS_ADMIN
    arm = seccomp.resolve(PROFILE, caps.OCI_DEFAULT, machine="aarch64", release="6.1")
    assert arm["architectures"] == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    assert _rules_for(arm, "breakpoint") and not _rules_for(arm, "arch_prctl")
    old = seccomp.resolve(PROFILE, caps.OCI_DEFAULT, machine="x86_64", release="4.4.0")
    new = seccomp.resolve(PROFILE, caps.OCI_DEFAULT, machine="x86_64", release="4.8.1")
    assert len(_rules_for(new, "ptrace")) == len(_rules_for(old, "ptrace")) + 1  # minKernel 4.8


def test_bad_profiles_are_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(seccomp.SeccompError, match="No such file"):
        seccomp.read_profile(str(tmp_path / "missing.json"))
    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(seccomp.SeccompError, match="not JSON"):
        seccomp.read_profile(str(tmp_path / "x.json"))
    (tmp_path / "y.json").write_text('{"syscalls": []}')
    with pytest.raises(seccomp.SeccompError, match="no defaultAction"):
        seccomp.read_profile(str(tmp_path / "y.json"))
    assert ContainerBackend(seccomp=str(tmp_path / "y.json")).available() is not None
    with pytest.raises(seccomp.SeccompError, match="not supported"):
        seccomp.compile_bpf({"defaultAction": "SCMP_ACT_FLY", "syscalls": []})
    assert seccomp.check(seccomp.UNCONFINED) is None and seccomp.prepare(seccomp.UNCONFINED, ()) is None


def test_compiled_program_is_deterministic_and_a_whole_number_of_instructions() -> None:
    f = seccomp.prepare(seccomp.DEFAULT, caps.OCI_DEFAULT)
    assert f is not None and len(f.bpf) % 8 == 0 and len(f.bpf) > 8 * 100
    assert seccomp.compile_bpf(f.oci) == f.bpf
    assert seccomp.status_mode("Name:\tx\nSeccomp:\t2\n") == 2
    with pytest.raises(OSError, match="malformed"):
        seccomp.install(b"\0" * 7)


# -- devices: pure logic -------------------------------------------------------------
def test_device_rules_are_runcs_allowlist() -> None:
    rules = devices.DEFAULT_RULES
    assert rules[0] == devices.Rule("a", allow=False)
    six = {(1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0)}
    for major, minor in six:
        assert devices.allows(rules, "c", major, minor, "rw")
    assert devices.allows(rules, "c", 1, 11, "m") and devices.allows(rules, "b", 8, 0, "m")  # mknod only
    assert not devices.allows(rules, "c", 1, 11, "r") and not devices.allows(rules, "c", 1, 11, "w")
    assert not devices.allows(rules, "b", 254, 0, "r") and not devices.allows(rules, "b", 8, 0, "rw")
    assert devices.allows(rules, "c", 136, 4, "rw")  # /dev/pts/*
    assert [r.v1() for r in rules[:4]] == ["a", "c *:* m", "b *:* m", "c 1:3 rwm"]
    assert devices.oci_rules(rules[:2]) == [{"allow": False, "access": "rwm"},
                                            {"allow": True, "access": "m", "type": "c"}]


def test_device_program_shape() -> None:
    prog = bpf.program(devices.DEFAULT_RULES)
    assert len(prog) % 8 == 0
    # the deny-all rule comes last (rules are checked last first) and ends the program: no
    # unreachable epilogue, which the verifier would refuse
    assert prog[-16:] == bytes([0xB4, 0, 0, 0, 0, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0])
    without = bpf.program(devices.DEFAULT_RULES[1:])  # no deny-all: a default-deny epilogue instead
    assert len(without) == len(prog) and without[-16:] == prog[-16:]


# -- devices: the kernel enforcing them ---------------------------------------------------
def _open_as_member(procs: Path, path: str) -> subprocess.CompletedProcess[str]:
    """A shell that joins the cgroup of ``procs``, then opens ``path`` (dd opens without reading)."""
    return subprocess.run(["/bin/sh", "-c", f"echo $$ > {procs} && exec dd if={path} of=/dev/null count=0"],
                          capture_output=True, text=True, timeout=10)


@pytest.mark.privileged
def test_v1_devices_cgroup_enforces_the_rules(run_id, no_leftovers) -> None:
    require(cgroups.version() == 1, "the v1 devices controller (this host's kind)")
    dev = devices.DeviceCgroup.create(f"isobench-{run_id}-dev")
    try:
        assert dev.listing() == [r.v1() for r in devices.DEFAULT_RULES if r.allow]
        procs = dev.path / "cgroup.procs"
        assert _open_as_member(procs, "/dev/null").returncode == 0
        kmsg = _open_as_member(procs, "/dev/kmsg")
        assert kmsg.returncode != 0 and "Operation not permitted" in kmsg.stderr
    finally:
        dev.remove()
    assert not dev.path.exists()


@pytest.mark.privileged
def test_bpf_device_program_enforces_the_rules(run_id, no_leftovers) -> None:
    """The v2 program, attached to a directory of the unified hierarchy (on a hybrid host the
    kernel consults it too, so this runs here as well as on v2 hosts)."""
    v2 = cgroups.v2_mount()
    require(v2 is not None, "no cgroup2 mount")
    assert v2 is not None
    d = v2.path / cgroups.v2_base().lstrip("/") / f"isobench-{run_id}-devbpf"
    fd = bpf.load(bpf.program(devices.DEFAULT_RULES))
    os.mkdir(d)
    try:
        bpf.attach(d, fd)
        assert bpf.attached(d) == 1
        assert _open_as_member(d / "cgroup.procs", "/dev/null").returncode == 0
        kmsg = _open_as_member(d / "cgroup.procs", "/dev/kmsg")
        assert kmsg.returncode != 0 and "Operation not permitted" in kmsg.stderr
    finally:
        os.close(fd)
        cgroups.Cgroup.wrap(d.name, {"": d}).remove()


@pytest.mark.v2host
def test_container_on_v2_carries_the_device_program(run_id, no_leftovers) -> None:
    b = ContainerBackend()
    assert b.available() is None
    spec = LaunchSpec(Workload("idle"), run_id, f"isobench-{run_id}-0", Limits(pids=64), timeout_s=30)
    with b.launch(spec) as inst:
        inst.wait_ready(20)
        assert inst.cgroup is not None and bpf.attached(inst.cgroup.dirs[""]) == 1
        assert "devices" in inst.times.phases
    b.close()


# -- the OCI bundles ask runc/crun for the same ----------------------------------------------
def test_oci_bundle_carries_the_same_seccomp_filter_devices_and_process_attributes(tmp_path: Path) -> None:
    ours = ContainerBackend()
    flt = ours.seccomp_filter()
    assert flt is not None
    spec = LaunchSpec(Workload("noop"), "r", "isobench-r-0", Limits(memory_mib=64), timeout_s=5)
    cfg = bundle.config(spec, tmp_path, "/isobench-r-0", cgroup_version=1, memsw=False, seccomp=dict(flt.oci))
    # same syscalls blocked: the identical OCI object, and it compiles to the identical program
    assert cfg["linux"]["seccomp"] == flt.oci
    assert seccomp.compile_bpf(cfg["linux"]["seccomp"]) == flt.bpf
    # same devices allowed
    assert ours.device_rules is not None
    assert cfg["linux"]["resources"]["devices"] == devices.oci_rules(ours.device_rules)
    assert cfg["process"]["rlimits"] == hardening.oci_rlimits()
    assert cfg["process"]["oomScoreAdj"] == hardening.OOM_SCORE_ADJ
    assert cfg["process"]["noNewPrivileges"] is True
    unconfined = bundle.config(spec, tmp_path, "/isobench-r-0", cgroup_version=1, memsw=False)
    assert "seccomp" not in unconfined["linux"]


@pytest.mark.privileged
@pytest.mark.parametrize("name", ["oci:runc", "oci:crun"])
def test_runc_and_crun_enforce_it_from_inside(name, run_id, tmp_path, no_leftovers) -> None:
    from runtimes.oci.backend import OciBackend

    b = OciBackend(name=name)
    reason = b.available()
    require(reason is None, f"{name} unavailable: {reason}")
    script = ('r() { echo "ISOBENCH RESULT $1=$2" >&3; }; r seccomp $(grep "^Seccomp:" /proc/self/status | cut -f2); '
              "unshare -r true; r unshare $?; mknod /dev/k c 1 11; cat /dev/k; r kmsg $?; "
              "r nofile $(ulimit -n); echo 'ISOBENCH READY' >&3")
    spec = LaunchSpec(Workload("noop"), run_id, f"isobench-{run_id}-0", Limits(), timeout_s=30,
                      log_dir=str(tmp_path), extra={"argv": ["/bin/sh", "-c", script]})
    try:
        with b.launch(spec) as inst:
            inst.wait_ready(20)
            inst.wait(20)
        assert inst.results["seccomp"] == "2" and inst.results["unshare"] != "0"
        assert inst.results["kmsg"] != "0" and inst.results["nofile"] == "1024", inst.results
    finally:
        b.close()
    assert rootfs.build().is_dir()


def test_errno_constants_used_by_the_probes() -> None:
    assert (errno.EPERM, errno.EACCES) == (1, 13)


def test_the_unconfined_variant_is_a_backend_of_its_own() -> None:
    import runtimes

    b = runtimes.get("container:unconfined")
    assert b.name == "container:unconfined" and b.seccomp == seccomp.UNCONFINED  # rows carry its name
    assert runtimes.declaration("container:unconfined").check_options({})["seccomp"] == "unconfined"
    assert runtimes.declaration("container").check_options({})["seccomp"] == "default"


@pytest.mark.privileged
def test_doctor_says_what_enforces_the_hardening_here() -> None:
    from runtimes.container import checks

    lines = {c.name: c for c in checks.checks(probe=False)}
    assert set(lines) == {"seccomp", "device rules", "native zygote"}
    assert lines["native zygote"].ok  # gcc is among doctor --fix's packages
    assert lines["seccomp"].ok and "BPF instructions" in lines["seccomp"].detail
    assert lines["device rules"].ok and f"cgroup v{cgroups.version()}" in lines["device rules"].detail


def test_an_oci_format_profile_gives_the_same_program(tmp_path: Path) -> None:
    """A resolved profile saved as OCI ``linux.seccomp`` (what a bundle carries) is a valid
    ``seccomp=`` file and compiles to the very same program."""
    import json

    f = seccomp.prepare(seccomp.DEFAULT, caps.OCI_DEFAULT)
    assert f is not None
    path = tmp_path / "oci.json"
    path.write_text(json.dumps(f.oci))
    g = seccomp.prepare(str(path), caps.OCI_DEFAULT)
    assert g is not None and g.bpf == f.bpf and g.oci == f.oci
