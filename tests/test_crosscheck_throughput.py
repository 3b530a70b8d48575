"""tools/crosscheck_throughput.py: which stored rows it compares, and the by-hand tool's own runs."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from runtimes import netlab

TOOLS = Path(__file__).resolve().parent.parent / "tools"
spec = importlib.util.spec_from_file_location("crosscheck_throughput", TOOLS / "crosscheck_throughput.py")
assert spec is not None and spec.loader is not None
xcheck = importlib.util.module_from_spec(spec)
spec.loader.exec_module(xcheck)


def row(metric: str, value: float, backend: str = "bare", instances: int = 1, **kw: object) -> str:
    return json.dumps({"measurement": "throughput", "backend": backend, "metric": metric, "value": value,
                       "status": kw.get("status", "ok"), "warmup": kw.get("warmup", False),
                       "params": {"instances": instances, "seconds": 3, "size_mib": 64, "cpus": "0"}})


def test_it_compares_only_bare_single_instance_counted_rows(tmp_path: Path) -> None:
    rows = [row("tp_cpu", 100), row("tp_cpu", 300), row("tp_cpu", 200), row("tp_cpu", 9e9, backend="container"),
            row("tp_cpu", 9e9, instances=2), row("tp_cpu", 9e9, warmup=True), row("tp_cpu", 9e9, status="failed"),
            row("tp_tcp_rr", 7.5), row("cpu_ratio", 1.0), "not json"]
    (tmp_path / "samples.jsonl").write_text("\n".join(rows) + "\n")
    got = xcheck.harness_figures(tmp_path)
    assert got == {"cpu": {"median": 200, "seconds": 3, "size_mib": 64, "cpus": "0"},
                   "tcp_rr": {"median": 7.5, "seconds": 3, "size_mib": 64, "cpus": "0"}}


@pytest.mark.privileged
def test_the_shell_tool_measures_by_hand_and_leaves_nothing() -> None:
    before = list(netlab.ours())
    for bench in ("syscall", "tcp_rr"):
        done = subprocess.run(["sh", str(TOOLS / "crosscheck-throughput.sh"), bench, "1", "/var/tmp", "16", "0"],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        kv = dict(f.split("=", 1) for f in done.stdout.split())
        assert kv["bench"] == bench and float(kv["value"]) > 0
    bad = subprocess.run([sys.executable, str(TOOLS / "crosscheck_throughput.py"), "--self", "nope",
                          "--seconds", "1", "--repeat", "1"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "unknown benchmark nope" in bad.stderr
    assert list(netlab.ours()) == before
    assert not list(Path("/run/netns").glob("isobench-xcheck-*"))
    assert not list(Path("/tmp").glob("isobench-xcheck.*"))
