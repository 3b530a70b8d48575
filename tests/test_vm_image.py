"""An image's app in a guest: its root made of the image's layers, readiness, user/env/workdir,
stop, limits, and nothing left behind.  Real guests under TCG here (a few seconds a boot: four
boots, each checking several things); plain unit tests for the pieces."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import runtimes
from runtimes.base import BackendError, InstanceTimeout, LaunchSpec, Limits
from runtimes.declaration import OptionError
from runtimes.image.model import Image
from runtimes.image.workload import ImageWorkload
from runtimes.vm import domain, image_guest, image_init, layers, modules, qemu
from runtimes.vm.image_ready import APP_STARTS, ImageReadiness
from runtimes.vm.machine import LayerDisk, Machine, SerialConsole, SharedDir
from runtimes.workloads import Ready
from tests import imagekit
from tests.conftest import isobench_cgroups

READY_TIMEOUT_S = 180.0  # TCG on a loaded 2-core machine


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Image]:
    img = imagekit.make(tmp_path_factory.mktemp("image"))
    yield img
    for tree, diff_id in zip(img.layers, img.diff_ids, strict=True):  # the test's layers are new each session
        layers.disk_path(tree, diff_id).unlink(missing_ok=True)


def _records(spec: bytes) -> list[tuple[str, str]]:
    assert spec.endswith(b"\0")
    return [tuple(r.decode().split("=", 1)) for r in spec[:-1].split(b"\0")]  # type: ignore[misc]


# -- units ---------------------------------------------------------------------------


@pytest.mark.privileged  # the test image's layers have owners (imagekit)
def test_the_starters_spec_is_the_resolved_process(image: Image) -> None:
    wl = ImageWorkload("who", image, command=("/bin/sh", "-c", "echo $A"), workdir="/www", user="app",
                       env={"A": "x=y"}, ready=Ready("http", port=8080, path="/index.html"), stop="SIGUSR1",
                       grace_s=2.5)
    recs = _records(image_guest.spec_bytes(wl, cgroup=True))
    get = dict(recs)
    assert [v for k, v in recs if k == "arg"] == ["/bin/sh", "-c", "echo $A"]
    assert "A=x=y" in [v for k, v in recs if k == "env"] and "PATH=/bin" in [v for k, v in recs if k == "env"]
    assert (get["cwd"], get["uid"], get["gid"], get["groups"]) == ("/www", "1000", "1000", "2000")
    assert (get["ready"], get["port"], get["path"]) == ("http", "8080", "/index.html")
    assert (get["stop"], get["grace_ms"], get["cgroup"]) == ("10", "2500", "/sys/fs/cgroup/isobench-workload")
    plain = dict(_records(image_guest.spec_bytes(ImageWorkload("x", image, ready=Ready("exit")), cgroup=False)))
    assert plain["ready"] == "none" and "port" not in plain and "cgroup" not in plain


@pytest.mark.privileged  # the test image's layers have owners (imagekit)
def test_a_nul_in_the_environment_is_refused(image: Image) -> None:
    wl = ImageWorkload("x", image, env={"A": "a\0b"})
    with pytest.raises(BackendError, match="NUL"):
        image_guest.spec_bytes(wl, cgroup=False)


def test_the_app_starter_is_built_as_the_zygote_is(tmp_path: Path, monkeypatch) -> None:
    """By the system compiler, found by absolute path (runtimes.cbuild), into the cache, static."""
    from runtimes.vm import native

    monkeypatch.setenv("CC", "gcc")  # a name: root's PATH is never searched
    with pytest.raises(BackendError, match="app starter cannot be built: .*not an absolute path"):
        native.guest_run(tmp_path)
    monkeypatch.delenv("CC")
    built = native.guest_run(tmp_path)
    assert built.parent == tmp_path and os.access(built, os.X_OK) and native.guest_run(tmp_path) == built
    assert b"ld-linux" not in built.read_bytes()[:4096]  # static: the guest's initramfs has no loader
    assert [p.name for p in tmp_path.iterdir()] == [built.name]  # no temporary file left


def test_the_guest_overlay_stacks_the_layers_top_first() -> None:
    assert image_init.Root("erofs", 3).lowerdir() == "/isobench/layers/2:/isobench/layers/1:/isobench/layers/0"
    share = image_init.Root("virtiofs", 2, ("/isobench/layers/sha256/b/tree", "/isobench/layers/sha256/a/tree"))
    assert share.lowerdir().split(":")[0].endswith("/b/tree")
    with pytest.raises(BackendError, match="too deep"):
        image_init.Root("virtiofs", 60, tuple(f"/isobench/layers/sha256/{'f' * 64}/tree" for _ in range(60))).lowerdir()


def test_modules_come_with_their_dependencies_first_and_builtins_left_out(tmp_path: Path) -> None:
    kernel = tmp_path / "boot" / "vmlinuz-9.9-test"
    mods = tmp_path / "lib" / "modules" / "9.9-test"
    kernel.parent.mkdir(parents=True)
    kernel.write_bytes(b"")
    mods.mkdir(parents=True)
    (mods / "modules.dep").write_text("kernel/fs/erofs/erofs.ko: kernel/lib/libcrc32c.ko\n"
                                      "kernel/lib/libcrc32c.ko:\nkernel/crypto/crc32c_generic.ko:\n"
                                      "kernel/drivers/virtio/virtio_blk.ko.xz: kernel/drivers/virtio/virtio.ko "
                                      "kernel/drivers/virtio/virtio_ring.ko\n"
                                      "kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko\n"
                                      "kernel/drivers/virtio/virtio_ring.ko:\n")
    (mods / "modules.builtin").write_text("kernel/fs/overlayfs/overlay.ko\n")
    found = modules.resolve(str(kernel), ("virtio_blk", "crc32c-generic", "erofs", "overlay"))
    assert [m.name for m in found] == ["virtio_ring", "virtio", "virtio_blk", "crc32c_generic", "libcrc32c", "erofs"]
    assert found[2].path == mods / "kernel/drivers/virtio/virtio_blk.ko.xz"
    with pytest.raises(BackendError, match="has no module fuse"):
        modules.resolve(str(kernel), ("fuse",))


@pytest.mark.vm  # the guest kernel and its modules (linux-image-amd64)
def test_the_host_kernel_has_what_an_image_guest_loads() -> None:
    from runtimes.vm import host

    kernel = host.find_kernel()
    assert kernel is not None, "no guest kernel (linux-image-amd64)"
    for kind, wanted in modules.NEEDS.items():
        names = [m.name for m in modules.resolve(kernel, wanted)]
        assert names.index("virtio") < names.index("virtio_pci") and names[-1] == "overlay", kind


MACHINE = Machine(name="isobench-unit-0", accel="tcg", kernel="/k/vmlinux", initrd="/k/initrd.img",
                  devices=(SerialConsole(), LayerDisk("/c/erofs-a,b.img", "isobench-layer-0"),
                           LayerDisk("/c/erofs-c.img", "isobench-layer-1")))


def test_layer_disks_are_read_only_virtio_disks_found_by_serial() -> None:
    import xml.etree.ElementTree as ET

    dom = ET.fromstring(domain.render(MACHINE))
    disks = dom.findall("devices/disk")
    assert [d.find("source").get("file") for d in disks] == ["/c/erofs-a,b.img", "/c/erofs-c.img"]  # type: ignore[union-attr]
    assert [d.findtext("serial") for d in disks] == ["isobench-layer-0", "isobench-layer-1"]
    assert all(d.find("readonly") is not None and d.find("target").get("bus") == "virtio" for d in disks)  # type: ignore[union-attr]
    assert all(d.find("source/seclabel").get("relabel") == "no" for d in disks)  # type: ignore[union-attr]
    assert dom.find("memoryBacking") is None
    argv = qemu.qemu_argv(MACHINE, "qemu")
    blockdevs = [argv[i + 1] for i, a in enumerate(argv) if a == "-blockdev"]
    assert "filename=/c/erofs-a,,b.img" in blockdevs[0] and all("read-only=on" in b for b in blockdevs)
    devices = [argv[i + 1] for i, a in enumerate(argv) if a == "-device"]
    assert [d for d in devices if d.startswith("virtio-blk-pci")][1].endswith("serial=isobench-layer-1")
    assert domain.disk_name(0) == "vda" and domain.disk_name(25) == "vdz" and domain.disk_name(26) == "vdaa"


def test_a_virtiofs_guest_has_shared_memory_and_a_vhost_user_device() -> None:
    import xml.etree.ElementTree as ET

    m = Machine(**{**MACHINE.__dict__, "devices": (SerialConsole(), SharedDir("/r/s.sock", "isobench-layers", "/l")),
                   "shared_memory": True})
    argv = qemu.qemu_argv(m, "qemu")
    assert any(a.startswith("memory-backend-memfd,") and a.endswith("share=on") for a in argv)
    assert "vhost-user-fs-pci,chardev=chr-vu-fs1,id=fs1,tag=isobench-layers" in argv
    dom = ET.fromstring(domain.render(m))
    assert dom.find("memoryBacking/access").get("mode") == "shared"  # type: ignore[union-attr]
    fs = dom.find("devices/filesystem")
    assert fs is not None and fs.find("driver").get("type") == "virtiofs"  # type: ignore[union-attr]
    assert fs.find("source").get("dir") == "/l" and fs.find("target").get("dir") == "isobench-layers"  # type: ignore[union-attr]


def _feed(r: ImageReadiness, *lines: str) -> None:
    for t, line in enumerate(lines, start=1):
        r.line(line, t)


def test_readiness_read_off_the_console() -> None:
    log = ImageReadiness("i", Ready("log", pattern=r"up \d+"))
    _feed(log, "up 1 (the kernel, before the app)", f"ISOBENCH RESULT {APP_STARTS}=3.1", "booting", "up 42\r")
    assert log.wait(0) == 4
    tcp = ImageReadiness("i", Ready("tcp", port=1))
    _feed(tcp, f"ISOBENCH RESULT {APP_STARTS}=3.1", "ISOBENCH READY")
    assert tcp.wait(0) == 2
    done = ImageReadiness("i", Ready("exit"))
    _feed(done, f"ISOBENCH RESULT {APP_STARTS}=3.1", "ISOBENCH EXIT 0")
    assert done.wait(0) == 2
    failed = ImageReadiness("i", Ready("exit"))
    _feed(failed, "ISOBENCH EXIT 3")
    with pytest.raises(BackendError, match="status 3 .ready = exit wants 0"):
        failed.wait(0)
    early = ImageReadiness("i", Ready("http", port=80))
    _feed(early, "ISOBENCH EXIT 1")
    with pytest.raises(BackendError, match="status 1 before it was ready .http 80/"):
        early.wait(0)
    gone = ImageReadiness("i", Ready("tcp", port=1))
    gone.end()
    with pytest.raises(InstanceTimeout, match="guest ended"):
        gone.wait(0)
    with pytest.raises(InstanceTimeout, match="not ready within"):
        ImageReadiness("i", Ready("tcp", port=1)).wait(0)


def test_an_image_guests_report_has_its_page_cache_with_the_app_running() -> None:
    from runtimes.vm.guest import guest_report

    base = {"guest_mem_total_kib": "204800", "guest_mem_available_kib": "180000"}
    ready = {f"guest_ready_{k}_kib": v for k, v in (("mem_available", "150000"), ("cached", "30720"),
                                                      ("shmem", "10240"))}
    now = {f"guest_now_{k}_kib": v for k, v in (("mem_available", "102400"), ("cached", "51200"),
                                                  ("shmem", "10240"))}
    r = guest_report({**base, **ready}, None)
    assert float(r["guest_page_cache"]) == 20.0 and float(r["guest_app_mem_used"]) == (204800 - 150000) / 1024
    r = guest_report({**base, **ready, **now}, None)  # the latest answer wins
    assert float(r["guest_page_cache"]) == 40.0 and float(r["guest_app_mem_used"]) == 100.0
    assert "guest_page_cache" not in guest_report(base, None)  # a catalog guest: no such figure


@pytest.mark.privileged  # the test image's layers have owners (imagekit)
def test_density_reads_a_guests_disks_and_each_guests_own_page_cache(image: Image, tmp_path: Path) -> None:
    from harness.measure import sharing

    disk = tmp_path / "disk.img"
    disk.write_bytes(b"x" * (64 << 10))
    with open(disk, "rb") as f:
        f.read()  # its pages are in the page cache now
    ramp, control = sharing.Reads(image, (disk,)), sharing.Reads()
    for reads in (ramp, control, ramp, control):  # two points each: a slope needs them
        reads.read()

    class Guest:
        results: dict[str, str] = {}
        cgroup = None  # a guest's file pages are not charged to a host cgroup of its own

        def __init__(self, mib: str) -> None:
            self.mib = mib

        def guest_report(self) -> dict[str, str]:
            return {"guest_page_cache": self.mib}

    ramp.charge([Guest("12.0"), Guest("13.0")])  # type: ignore[list-item]
    assert ramp.image_bytes == 64 << 10 and ramp.resident == [64 << 10] * 2 and ramp.where.endswith("layer disks")
    rows: list[tuple[str, float]] = []

    class Rows:
        def add(self, name: str, value: float, **_: object) -> None:
            rows.append((name, value))

    sharing.add_rows(Rows(), ramp, control)  # type: ignore[arg-type]
    got = dict(rows)
    assert got["guest_cache_each"] == 12.5 and got["guest_cache_total"] == 25.0 and got["image_resident_held"] == 0.0625
    gb = runtimes.get("qemu")
    spec = LaunchSpec(ImageWorkload("w", image), "u", "isobench-u-0")
    files = gb.image_files(spec)
    assert files == tuple(layers.disk_path(t, d) for t, d in zip(image.layers, image.diff_ids, strict=True))
    assert gb.image_files(LaunchSpec(ImageWorkload("w", image), "u", "isobench-u-0",
                                     extra={"image_root": "virtiofs"})) is None  # the layers themselves


def test_image_root_option_takes_only_known_kinds() -> None:
    decl = runtimes.declaration("qemu")
    assert decl.check_options({})["image_root"] == "erofs"
    with pytest.raises(OptionError, match="one of erofs, virtiofs"):
        decl.check_options({"image_root": "ext4"})


def test_the_layer_disk_sweep_keeps_the_stores_layers(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    keep, drop = "sha256:" + "a" * 64, "sha256:" + "b" * 64
    kept, dropped = layers.disk_path(tree, keep, tmp_path), layers.disk_path(tree, drop, tmp_path)
    young, old = kept.parent / ".isobench-new.img", kept.parent / ".isobench-old.img"
    for f in (kept, dropped, young, old):
        f.write_bytes(b"x")
    os.utime(old, (time.time() - 2 * layers.BUILD_TIMEOUT_S,) * 2)
    removed = layers.sweep({kept.name}, tmp_path)
    assert len(removed) == 2 and kept.exists() and young.exists() and not dropped.exists() and not old.exists()
    tree.rmdir()
    tree.mkdir()  # the same layer imported again: a new tree, a new disk
    assert layers.disk_path(tree, keep, tmp_path) != kept


@pytest.mark.privileged
def test_virtiofsd_leftovers_of_a_dead_run_go_a_live_runs_stay(run_id: str) -> None:
    from runtimes import owners
    from runtimes.vm import virtiofs

    live_id, dead_id = f"{run_id}l", f"{run_id}d"
    owners.claim(live_id)
    virtiofs.SOCKET_DIR.mkdir(mode=0o700, exist_ok=True)
    live, dead = (virtiofs.SOCKET_DIR / f"isobench-{r}-0.sock" for r in (live_id, dead_id))
    try:
        for sock in (live, dead):
            sock.touch()
        assert virtiofs.cleanup_leftovers(dead_id) == [] and not dead.exists() and live.exists()
        virtiofs.cleanup_leftovers(live_id)
        assert live.exists()  # its harness (this process) is alive
    finally:
        live.unlink(missing_ok=True)
        owners.release(live_id)


# -- real guests ---------------------------------------------------------------------


def _spec(run_id: str, n: int, wl: ImageWorkload, tmp_path: Path, **kw) -> LaunchSpec:
    return LaunchSpec(wl, run_id, f"isobench-{run_id}-{n}", timeout_s=READY_TIMEOUT_S, log_dir=str(tmp_path), **kw)


def _qemu_left(name: str) -> list[str]:
    left = [n for _, n in qemu.find_leftovers() if n == name]
    return left + [d for d in isobench_cgroups() if os.path.basename(d) == name]


@pytest.fixture(scope="module")
def qemu_backend() -> Iterator[qemu.QemuBackend]:
    b = runtimes.get("qemu")
    b.prepare()
    yield b  # type: ignore[misc]
    b.close()


SCRIPT = ("b=/bin/busybox; $b id -u; $b id -g; $b id -G; $b pwd; echo \"greeting=$GREETING\"; "
          "echo whiteout=$($b ls /junk); echo opaque=$($b ls /opq); $b touch /home/app/written && echo wrote; "
          "$b readlink /proc/$$/fd/3 || echo no-fd-3; "
          "$b cat /proc/mounts; $b printf no-newline-at-the-end")


@pytest.mark.vm
@pytest.mark.privileged
@pytest.mark.parametrize("root", ["erofs", "virtiofs"])
def test_the_guest_runs_the_app_on_its_layers_as_the_image_says(image: Image, qemu_backend, run_id: str,
                                                                 tmp_path: Path, root: str, no_leftovers) -> None:
    wl = ImageWorkload("who", image, command=("/bin/sh", "-c", SCRIPT), workdir="/www", user="app",
                       env={"GREETING": "hi from the scenario"}, ready=Ready("exit"))
    spec = _spec(run_id, 0, wl, tmp_path, extra={"image_root": root})
    with qemu_backend.launch(spec) as inst:
        t = inst.wait_ready(READY_TIMEOUT_S)
        assert inst.wait(READY_TIMEOUT_S) == 0 and t == inst.times.t_exit  # ready = exit: t_ready is t_exit
    out = Path(inst.log_path or "").read_text().replace("\r", "")
    app = out[out.index(APP_STARTS):].splitlines()[1:]
    assert app[:5] == ["1000", "1000", "1000 2000", "/www", "greeting=hi from the scenario"]
    assert app[5:8] == ["whiteout=", "opaque=new.txt", "wrote"]  # the overlay honours the layers' own form
    assert app[8] == "no-fd-3"  # the app gets stdin, stdout, stderr and nothing else of the guest's
    mounts = [line.split() for line in app if line.startswith(("overlay", "proc", "sysfs", "devtmpfs"))]
    assert mounts[0][:3] == ["overlay", "/", "overlay"] and {"nosuid", "nodev"} <= set(mounts[0][3].split(","))
    r = inst.results
    assert "upperdir=/isobench/rw/upper" in r["guest_mount_root"]
    if root == "erofs":
        assert "lowerdir=/isobench/layers/1:/isobench/layers/0," in r["guest_mount_root"]
        for i, diff_id in enumerate(image.diff_ids):  # each layer: its own erofs disk, built once from its content
            fstype, dev, opts = r[f"guest_mount_layers_{i}"].split()
            assert fstype == "erofs" and re.fullmatch(r"/dev/vd[a-z]+", dev) and "ro" in opts.split(",")
            assert layers.disk_path(image.layers[i], diff_id).is_file()
    else:  # the store's own layer directories, shared read-only
        assert "lowerdir=/isobench/layers/layer1:/isobench/layers/layer0," in r["guest_mount_root"]
        fstype, tag, opts = r["guest_mount_layers"].split()
        assert (fstype, tag) == ("virtiofs", "isobench-layers") and "ro" in opts.split(",")
        assert not os.path.exists(f"/run/isobench-vm/{spec.instance}.sock")
    assert _qemu_left(spec.instance) == []


@pytest.mark.vm
@pytest.mark.privileged
def test_http_readiness_inside_the_guest_under_its_limits(image: Image, qemu_backend, run_id: str,
                                                          tmp_path: Path, no_leftovers) -> None:
    wl = ImageWorkload("web", image, ready=Ready("http", port=imagekit.PORT, path="/index.html"), grace_s=1)
    spec = _spec(run_id, 2, wl, tmp_path, limits=Limits(memory_mib=48, pids=16))
    with qemu_backend.launch(spec) as inst:
        t = inst.wait_ready(READY_TIMEOUT_S)
        assert inst.times.t_launch is not None and t > inst.times.t_launch
        report = inst.guest_report()  # asks the guest for its memory now
        assert inst.results["guest_now_seq"] == "1" and float(report["guest_page_cache"]) > 0
        u = inst.usage()  # the guest cgroup's counters, under the keys a host cgroup's have
        assert u["oom_kill"] == 0 and u["pids_current"] >= 1 and 0 < u["mem_current_bytes"] <= 48 << 20
        assert "cpu_usage_ns" in u  # beside the host's own counters of the guest
        inst.stop()
        inst.wait(READY_TIMEOUT_S)
    r = inst.results
    assert int(r["guest_ready_cached_kib"]) > 0 and int(r["guest_ready_mem_available_kib"]) > 0
    assert r["guest_cg_mem_oom_kill"] == "0" and int(r["guest_cg_mem_peak"]) > 0  # the app ran in the guest cgroup
    assert _qemu_left(spec.instance) == []


@pytest.mark.vm
@pytest.mark.libvirt
@pytest.mark.privileged
def test_redis_in_a_libvirt_guest_ready_by_tcp(run_id: str, tmp_path: Path, no_leftovers) -> None:
    from runtimes.image import examples
    from tests.test_vm_guest import guest_left

    redis = examples.ensure("isobench/redis")
    wl = ImageWorkload("redis", redis, ready=Ready("tcp", port=6379), grace_s=10)
    spec = _spec(run_id, 3, wl, tmp_path)
    with runtimes.get("vm") as b:
        b.prepare()
        with b.launch(spec) as inst:
            inst.wait_ready(READY_TIMEOUT_S)
            inst.stop()
            assert inst.wait(READY_TIMEOUT_S) == 0  # redis saw SIGTERM and shut down by itself
    assert "Ready to accept connections" in Path(inst.log_path or "").read_text()
    assert [inst.results[f"guest_mount_layers_{i}"].split()[0] for i in range(2)] == ["erofs", "erofs"]
    assert guest_left(spec.instance) == []


@pytest.mark.vm
@pytest.mark.libvirt
@pytest.mark.privileged
def test_a_libvirt_guest_reads_the_layers_over_virtiofs_ready_by_log_stopped_by_its_signal(
        image: Image, run_id: str, tmp_path: Path, no_leftovers) -> None:
    from tests.test_vm_guest import guest_left

    script = ("trap 'echo stopping; exit 7' USR1; b=/bin/busybox; echo whiteout=$($b ls /junk) opaque=$($b ls /opq); "
              "echo 'app is up'; while :; do $b sleep 0.1; done")
    wl = ImageWorkload("polite", image, command=("/bin/sh", "-c", script), ready=Ready("log", pattern=r"is (up)$"),
                       stop="SIGUSR1", grace_s=20)
    spec = _spec(run_id, 4, wl, tmp_path, extra={"image_root": "virtiofs"})
    with runtimes.get("vm") as b:
        b.prepare()
        with b.launch(spec) as inst:
            inst.wait_ready(READY_TIMEOUT_S)
            daemons = inst.processes()[1:]  # libvirt's virtiofsd: its memory is the guest's
            assert len(daemons) == 1 and "virtiofsd" in Path(f"/proc/{daemons[0]}/cmdline").read_text()
            inst.stop()  # the app's own signal, through the guest: its trap runs
            assert inst.wait(1) == 7 and inst.results["guest_stop_signal"] == "10"
            assert "guest_stop_killed" not in inst.results
    out = Path(inst.log_path or "").read_text()
    assert "whiteout= opaque=new.txt" in out  # the layers' trusted.* xattrs reach the guest
    assert out.index("app is up") < out.index("stopping")
    assert inst.results["guest_mount_layers"].startswith("virtiofs isobench-layers ")
    assert guest_left(spec.instance) == [] and not any(os.path.exists(f"/proc/{p}") for p in daemons)
