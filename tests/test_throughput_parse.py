"""Reading the throughput tools' output: real output captured on the dev host (tests/data/throughput).

Each file is what the tool wrote on this machine (stress-ng 0.15.06, fio 3.33, iperf3 3.12,
sockperf 3.7), successful runs and failed ones: a run that exited non-zero, one that exited 0
having measured nothing, one cut short.  No root needed, nothing run.
"""

from __future__ import annotations

import base64
import gzip
import json
import re
from pathlib import Path

import pytest

from runtimes.throughput import catalog, parse
from runtimes.throughput.parse import ToolFailure, judge
from runtimes.throughput.script import key

DATA = Path(__file__).parent / "data" / "throughput"


def read(name: str) -> str:
    return (DATA / name).read_text()


def b64(text: str) -> str:
    return base64.b64encode(gzip.compress(text.encode())).decode()


@pytest.mark.parametrize("name", ["cpu", "matrix", "stream", "stream_random", "syscall", "forkexec", "ctxswitch"])
def test_stress_ng_yaml_gives_bogo_ops_per_second(name: str) -> None:
    text = read(f"stress-ng-{name}.yaml")
    want = float(re.search(r"bogo-ops-per-second-real-time: ([\d.]+)", text).group(1))  # type: ignore[union-attr]
    r = judge(catalog.bench(name), 0, text, read(f"stress-ng-{name}.log"), 2)
    assert r.value == pytest.approx(want) and r.seconds >= 2


def test_stress_ng_that_ran_nothing_fails_with_its_own_reason() -> None:
    # real: `stress-ng --exec` as root exits 0, skips the stressor and writes no YAML
    with pytest.raises(ToolFailure, match="printed no rate.*No stress workers invoked"):
        judge(catalog.bench("forkexec"), 0, None, read("stress-ng-forkexec-as-root.log"), 2)


def test_stress_ng_that_exited_non_zero_fails_with_its_status() -> None:
    with pytest.raises(ToolFailure, match=r"exited with status 1: cpu-method must be one of"):
        judge(catalog.bench("cpu"), 1, None, read("stress-ng-badarg.log"), 2)


def test_stress_ng_cut_short_fails() -> None:
    # real: SIGINT after 1.5 s of a 4 s run; stress-ng exits 0 and writes its YAML
    with pytest.raises(ToolFailure, match=r"ran short: it measured 1.51 s of 4.00 s"):
        judge(catalog.bench("cpu"), 0, read("stress-ng-cpu-interrupted.yaml"), "", 4)


def test_stress_ng_yaml_of_another_stressor_has_no_rate() -> None:
    with pytest.raises(ToolFailure, match="no rate for matrix"):
        judge(catalog.bench("matrix"), 0, read("stress-ng-cpu.yaml"), "", 2)


@pytest.mark.parametrize("name", ["randread", "randwrite", "seqread", "seqwrite"])
def test_fio_json_gives_iops_or_mib_per_second(name: str) -> None:
    text = read(f"fio-{name}.json")
    job = json.loads(text)["jobs"][0]
    side = job["write" if "write" in name else "read"]
    b = catalog.bench(name)
    want = side["iops"] if b.unit == "IOPS" else side["bw"] / 1024
    r = judge(b, 0, text, "", 2)
    assert r.value == pytest.approx(want) and r.value > 0
    assert r.seconds == pytest.approx(side["runtime"] / 1000)


def test_fio_that_failed_reports_its_words() -> None:
    with pytest.raises(ToolFailure, match=r"exited with status 1: fio: failed to create dir"):
        judge(catalog.bench("randread"), 1, read("fio-badtarget.json"), read("fio-badtarget.log"), 2)
    # the same JSON with a 0 status: fio's job measured nothing
    with pytest.raises(ToolFailure, match="no rate|ran short"):
        judge(catalog.bench("randread"), 0, read("fio-badtarget.json"), read("fio-badtarget.log"), 2)


def test_fio_read_benchmark_does_not_read_the_write_side() -> None:
    with pytest.raises(ToolFailure, match="no rate"):
        judge(catalog.bench("randread"), 0, read("fio-randwrite.json"), "", 2)


def test_iperf3_json_gives_the_receivers_gbit_per_second() -> None:
    text = read("iperf3-tcp.out")
    want = json.loads(text)["end"]["sum_received"]["bits_per_second"] / 1e9
    r = judge(catalog.bench("tcp_stream"), 0, text, "", 2)
    assert r.value == pytest.approx(want) and r.seconds == pytest.approx(2, abs=0.1)


def test_iperf3_refused_exits_0_and_still_fails() -> None:
    # real: iperf3 3.12 -J exits 0 when the server refuses the connection
    with pytest.raises(ToolFailure, match="iperf3: unable to connect to server: Connection refused"):
        judge(catalog.bench("tcp_stream"), 0, read("iperf3-refused.out"), "", 2)


def test_iperf3_interrupted_fails() -> None:
    with pytest.raises(ToolFailure, match="exited with status 1"):
        judge(catalog.bench("tcp_stream"), 1, read("iperf3-interrupted.out"), "", 4)
    with pytest.raises(ToolFailure, match="iperf3: interrupt"):
        judge(catalog.bench("tcp_stream"), 0, read("iperf3-interrupted.out"), "", 4)


def test_sockperf_gives_the_median_latency() -> None:
    text = read("sockperf-pp.out")
    want = float(re.search(r"percentile 50.000 =\s*([\d.]+)", text).group(1))  # type: ignore[union-attr]
    r = judge(catalog.bench("tcp_rr"), 0, text, "", 2)
    assert r.value == pytest.approx(want)
    assert r.extra["avg"] > 0 and r.extra["messages"] > 1000


def test_sockperf_refused_or_interrupted_fails() -> None:
    # real: sockperf 3.7 exits 0 in both cases
    with pytest.raises(ToolFailure, match="sockperf: Can`t connect socket"):
        judge(catalog.bench("tcp_rr"), 0, read("sockperf-refused.out"), "", 2)
    with pytest.raises(ToolFailure, match="no latency.*No messages were sent"):
        judge(catalog.bench("tcp_rr"), 0, read("sockperf-interrupted.out"), "", 4)


def test_no_exit_status_or_empty_output_fails() -> None:
    b = catalog.bench("cpu")
    with pytest.raises(ToolFailure, match="did not finish"):
        judge(b, None, read("stress-ng-cpu.yaml"), "", 2)
    with pytest.raises(ToolFailure, match="printed no rate"):
        judge(b, 0, "  \n", "", 2)


def test_instance_run_decodes_the_marker_fields() -> None:
    b = catalog.bench("syscall")
    results = {key("syscall", "rc"): "0", key("syscall", "out"): b64(read("stress-ng-syscall.yaml")),
               key("syscall", "log"): b64(read("stress-ng-syscall.log"))}
    assert parse.instance_run(b, results, 2).value > 0
    with pytest.raises(ToolFailure, match="reported no exit status"):
        parse.instance_run(b, {}, 2)
    with pytest.raises(ToolFailure, match="arrived corrupt"):
        parse.instance_run(b, {**results, key("syscall", "out"): "not base64!"}, 2)
    with pytest.raises(ToolFailure, match="exited with status 3"):
        parse.instance_run(b, {**results, key("syscall", "rc"): "3"}, 2)
