"""The matrix's pure logic: kernel names, cgroup-mode shell, vng command lines, JUnit verdicts, sweeps."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from harness.errors import UserError
from harness.matrix import guest, intests, kernels, leftovers, modes

DEBIAN = ["linux-image-6.12.107+deb12-amd64", "linux-image-6.12.117+deb12-amd64",
          "linux-image-6.12.117+deb12-rt-amd64", "linux-image-6.12.117+deb12-cloud-amd64",
          "linux-image-6.12.117+deb12-amd64-dbg", "linux-image-6.12.117+deb12-amd64-unsigned",
          "linux-image-6.1.0-9-amd64", "linux-image-6.1.0-47-amd64", "linux-image-6.1.0-47-rt-amd64"]


def test_a_series_names_the_newest_debian_image_of_its_flavour() -> None:
    assert kernels.newest(DEBIAN, "6.12", "") == "linux-image-6.12.117+deb12-amd64"
    assert kernels.newest(DEBIAN, "6.12", "rt") == "linux-image-6.12.117+deb12-rt-amd64"
    assert kernels.newest(DEBIAN, "6.1", "") == "linux-image-6.1.0-47-amd64"  # 47 > 9, not 6.12
    assert kernels.newest(DEBIAN, "6.1", "cloud") is None
    assert kernels.parse_spec("6.12-rt") == ("6.12", "rt")
    assert kernels.parse_spec("6.1") == ("6.1", "")
    assert kernels.parse_spec("linux") is None


def test_an_unknown_kernel_name_or_missing_path_is_one_clear_error() -> None:
    with pytest.raises(UserError, match="unknown kernel 'banana'"):
        kernels.resolve("banana")
    with pytest.raises(UserError, match="no such kernel image"):
        kernels.resolve("/nonexistent/bzImage")


def test_a_path_is_used_as_is(tmp_path) -> None:
    img = tmp_path / "vmlinuz-6.9.0-test"
    img.write_bytes(b"\0" * 0x202 + b"HdrS" + b"\0" * 16)  # the x86 boot header's magic, no more
    k = kernels.resolve(str(img))
    assert (k.image, k.release, k.source, k.label) == (img, "6.9.0-test", "path", "6.9.0-test")


def test_v2_mode_delegates_then_moves_the_shell_into_a_scope(tmp_path) -> None:
    text = modes.prelude("v2")
    assert "cgroup.subtree_control" in text and f"$cg/{modes.SCOPE}/cgroup.procs" in text
    with pytest.raises(ValueError):
        modes.prelude("v3")


def test_v1_mode_mounts_each_hierarchy_and_says_which_failed() -> None:
    text = modes.prelude("v1", "/out/cg.txt")
    assert "umount $cg" in text and "mount -t cgroup -o memory" in text and "mount -t cgroup -o cpu,cpuacct" in text
    assert "isobench-guest: v1 memory: not available" in text
    # the shell is valid (parsed, not run)
    assert subprocess.run(["sh", "-n", "-c", text], check=False).returncode == 0


def test_the_vng_command_line() -> None:
    g = guest.Guest(Path("/boot/vmlinuz-x"), accel="tcg", cpus=2, memory_mib=512, rw_dirs=(Path("/r"),),
                    cached_paths=("/usr",))
    argv = guest.argv(g, "isobench-guest-a", Path("/tmp/isobench-guest-a/script.sh"), vng="vng")
    assert argv[:4] == ["vng", "-v", "-r", "/boot/vmlinuz-x"] and "--disable-kvm" in argv
    assert argv[argv.index("--rwdir") + 1] == "/r" and argv[argv.index("--name") + 1] == "isobench-guest-a"
    # the script is a file: vng puts --exec on the kernel command line, limited to 2 KiB
    assert argv[-2:] == ["--exec", "sh /tmp/isobench-guest-a/script.sh"]
    assert "mount_tag=cachedroot" in " ".join(argv)
    prelude = guest.cached_prelude(("/usr",))
    assert "cache=loose" in prelude and "mount --bind /run/cachedroot/usr /usr" in prelude
    assert "--disable-kvm" not in guest.argv(guest.Guest(Path("/k"), accel="kvm"), "n", Path("/s"))
    with pytest.raises(ValueError):
        guest.Guest(Path("/k"), accel="hvf")


def test_junit_verdict_fails_on_skips_and_on_nothing(tmp_path) -> None:
    j = tmp_path / "j.xml"
    j.write_text('<testsuites><testsuite tests="3" failures="0" errors="0" skipped="1"/></testsuites>')
    v = intests.read_junit(j)
    assert not v.passed and "1 skipped" in v.words()
    j.write_text('<testsuite tests="0" failures="0" errors="0" skipped="0"/>')
    assert not intests.read_junit(j).passed
    j.write_text('<testsuite tests="2" failures="0" errors="0" skipped="0"/>')
    assert intests.read_junit(j).passed


def test_the_guest_script_runs_exactly_the_collected_tests_with_ci_true(tmp_path) -> None:
    s = intests.script(["tests/test_x.py::test_a"], tmp_path / "j.xml")
    assert "export CI=true" in s and "tests/test_x.py::test_a" in s and "-m v2host" in s
    assert s.index(modes.SCOPE) < s.index("exec ")


def test_cleanup_removes_only_directories_of_dead_harnesses(tmp_path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = tmp_path / f"{guest.GUEST_PREFIX}runA-{dead.pid}-abc123"
    live = tmp_path / f"{guest.GUEST_PREFIX}runA-{os.getpid()}-abc123"
    stale.mkdir()
    live.mkdir()
    assert leftovers.stale_dirs("runA", tmp_path) == [stale]
    assert leftovers.stale_dirs("runB", tmp_path) == []


# -- reports over cells (synthetic run directories annotated as a matrix does) ----------------
def _cells(tmp_path: Path) -> Path:
    from harness.matrix import cells
    from tests import synth

    out = tmp_path / "m"
    out.mkdir()
    done = []
    for i, (k, mode) in enumerate([("6.1", "v1"), ("6.12", "v2")]):
        kern = kernels.Kernel(k, Path(f"/k/vmlinuz-{k}"), f"{k}.0-test", "installed")
        spec = cells.CellSpec(kern, mode, "tcg", "KVM unusable")
        run = synth.make_run(out, hostname=f"isobench-guest-{i}", kernel=kern.release, backends=("bare", "container"),
                             measurements=("startup", "cpu_quota", "mem_limit", "pids_limit"), reps=3, seed=i,
                             run_id=f"m-{spec.name}")
        cells.annotate(run, spec, {"hostname": "physical"}, [f"v1 memory: {'mounted' if k == '6.1' else 'not available'}"])
        done.append(cells.CellResult(spec.name, k, mode, "tcg", "completed", run_dir=run.name, seconds=10.0,
                                     samples={"ok": 1}))
    cells.write_summary(out, done, {"matrix_id": "m"})
    return out


def test_a_report_over_cells_splits_series_by_kernel_and_cgroup_and_keeps_emulated_startup_out(tmp_path) -> None:
    from harness.report import model

    out = _cells(tmp_path)
    data = model.load(sorted(p for p in out.iterdir() if p.is_dir()))
    assert data.split == "cell"
    labels = set(data.rows["series"])
    assert "bare (TCG, emulated) @ 6.1 cgroup v1" in labels and "container (TCG, emulated) @ 6.12 cgroup v2" in labels
    assert data.of("startup").empty  # timed under emulation inside a guest: not charted
    assert not data.of("cpu_quota").empty
    m = json.loads((out / "m-6.1-v1" / "manifest.json").read_text())
    assert m["guest"]["cgroup_mode"] == "v1" and m["guest"]["accel"] == "tcg" and m["guest_of"] == {"hostname": "physical"}


def test_the_matrix_page_lists_cells_enforcement_and_the_cpu_chart(tmp_path) -> None:
    from harness.matrix import summary

    out = _cells(tmp_path)
    page = summary.write(out).read_text()
    assert "| 6.1-v1" in page and "| 6.12-v2" in page and "emulated" in page
    assert "cpu_ratio (quota limits)" in page and (out / "cpu_ratio_by_cell.png").is_file()
