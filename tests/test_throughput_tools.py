"""The throughput tools in the workload tree, and the instance's script run for real in it.

The script runs chrooted into the throughput tree (a private mount, PID and network namespace:
nothing of the shared tree is written), as a container runs it, each benchmark for one second;
the host opens its gate from inside the same namespace over loopback, then judges every tool run
as the measurement does.  The benchmarks test_throughput_session runs in a container (fio's
random read, the exec benchmark as nobody, the network servers) are left to it.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest

from runtimes import netlab, rootfs
from runtimes.marker import MarkerChannel
from runtimes.throughput import catalog, parse, scratch, script
from runtimes.wait import wait_until
from runtimes.workloads import MARKER_FD


def test_the_throughput_tree_holds_the_tools_and_leaves_the_base_tree_alone() -> None:
    base = rootfs.build()
    tree = rootfs.build(extra=catalog.TOOLS)
    assert tree != base and rootfs.build(extra=catalog.TOOLS) == tree  # cached
    assert base.name == rootfs.content_hash(rootfs.inputs())  # the base key did not move
    for f in [*rootfs.BINARIES, *catalog.TOOLS]:
        assert (tree / os.path.realpath(f).lstrip("/")).read_bytes() == Path(f).read_bytes(), f
    for f in catalog.TOOLS:
        assert not (base / f.lstrip("/")).exists()
    assert "nobody" in (tree / "etc/passwd").read_text() and "nobody" not in (base / "etc/passwd").read_text()


def test_a_missing_tool_names_its_package() -> None:
    with pytest.raises(rootfs.RootfsError, match="apt-get install isobench-no-such-package"):
        rootfs.inputs({"/nonexistent/isobench-tool": "isobench-no-such-package"})


def test_the_script_runs_each_benchmark_once_and_serves_the_clients() -> None:
    benches = [catalog.bench(n) for n in ("cpu", "forkexec", "randread", "tcp_stream")]
    text = script.suite(benches, 3, host_dir="/var/x", index=2)
    assert text.count("\ntp cpu ") == 1 and text.count("\ntp randread ") == 1
    assert '--filename="$t"' in text and "t=/var/x/fio-2.dat" in text and "su -s /bin/sh nobody" in text
    assert "t=/root/" not in text and "t=/root/fio-2.dat" in script.suite(benches, 3, host_dir="/var/x", index=2,
                                                                          layer=True)
    assert "tp tcp_stream" not in text and catalog.iperf3_server()[0] in text
    assert "iperf3" not in script.suite(benches[:1], 3)
    with pytest.raises(ValueError, match="storage target"):
        script.suite(benches[2:3], 3)


#: one second each: the test checks that every tool runs and is judged, never how fast
SECONDS = 1
FIO_MIB = 16
HERE = [b.name for b in catalog.BENCHES if b.where == "instance" and b.name not in ("forkexec", "randread")]


@pytest.mark.privileged
@pytest.mark.slow
def test_every_tool_runs_in_the_tree_and_counts(run_id: str, tmp_path: Path, no_leftovers: None) -> None:
    tree = rootfs.build(extra=catalog.TOOLS)
    benches = [catalog.bench(n) for n in HERE]
    (tmp_path / scratch.MARKER).write_text(f"{tmp_path}\n")  # the volume, as the sample's directory has it
    text = script.suite(benches, SECONDS, host_dir=str(tmp_path), size_mib=FIO_MIB)
    # a private mount namespace: /proc, /tmp and the fio directory exist in it only
    setup = (f"mount -t proc proc {tree}/proc && mount -t tmpfs tmpfs {tree}/tmp && "
             f"mount --rbind /dev {tree}/dev && mount --bind {tmp_path} {tree}/mnt && "
             f"exec chroot {tree} /bin/busybox sh -c {shlex.quote(text)} {MARKER_FD}>&{{fd}}")
    read_fd, write_fd = os.pipe()
    setup = setup.replace("{fd}", str(write_fd))
    channel = MarkerChannel()
    with netlab.Lab(run_id) as lab:
        ns = lab.namespace("tools")
        proc = subprocess.Popen(netlab.nsenter(ns, ["unshare", "--mount", "--pid", "--fork", "--kill-child", "busybox", "sh", "-c", setup]),
                                pass_fds=(write_fd,),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        os.close(write_fd)
        channel.read_fd(read_fd)
        try:
            if not channel.ready.wait(30) or channel.t_ready is None:
                proc.kill()
                pytest.fail(f"no ready marker: {proc.communicate()[1]}")
            # the gate opens once its listener is up: retry until the connection is taken
            assert wait_until(lambda: netlab.run_in(ns, ["busybox", "nc", "127.0.0.1", str(catalog.GATE_PORT)],
                                                    timeout=5).returncode == 0, 10, 0.05)
            status = proc.wait(120)
        finally:
            proc.kill()
            proc.wait()
            channel.join()
    assert status == 0, proc.stderr.read() if proc.stderr else ""
    readings = {b.name: parse.instance_run(b, channel.results, SECONDS) for b in benches}
    assert sorted(readings) == sorted(HERE) and all(r.value > 0 for r in readings.values())
    assert channel.results[script.TARGET_KEY] == "volume"
    assert not (tmp_path / "fio-0.dat").exists()  # the script removes its file
