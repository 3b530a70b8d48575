"""The host's verdict on one tool run: its rate, or the reason the sample fails.

A run counts only when the tool says so itself: it exited 0, printed the rate
in its own output (stress-ng's YAML, fio's and iperf3's JSON, sockperf's
summary), and measured for as long as it was asked to (``SHORT``).  Several of
these tools exit 0 when they measured nothing -- stress-ng when a stressor
refuses to run (its exec stressor as root), iperf3 3.12 and sockperf 3.7 when
the server cannot be reached -- so the output is always read, never assumed.
Anything else raises :class:`ToolFailure`, whose message is the reason the
sample fails, in the tool's own words where it gave some.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import json
import math
import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from runtimes.throughput.catalog import Bench
from runtimes.throughput.script import key

#: a run that measured for less than this share of the time asked for is short: its sample fails
SHORT = 0.9
#: what sockperf leaves out of the seconds it reports: its warm-up ("Warm up time=400 msec") and
#: the messages still in flight when its timer fires
SOCKPERF_WARMUP_S = 0.5
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class ToolFailure(Exception):
    """The tool run does not count; ``str()`` is the reason, for the sample's error."""


@dataclass(frozen=True)
class Reading:
    """One counted run: ``value`` in the benchmark's unit, ``seconds`` it measured for, and the
    tool's other figures (``extra``, name -> value) kept beside it."""

    value: float
    seconds: float
    extra: Mapping[str, float] = field(default_factory=dict)


def decode(text: str | None) -> str | None:
    """A gzip + base64 field of the marker channel, as text (None stays None)."""
    if text is None:
        return None
    try:
        return gzip.decompress(base64.b64decode(text, validate=True)).decode(errors="replace")
    except (binascii.Error, OSError, EOFError, zlib.error) as e:
        raise ToolFailure(f"the tool's output arrived corrupt ({e})") from None


def _last_words(log: str | None) -> str:
    """The tool's most telling line: its last error line, else its last line."""
    lines = [_ANSI.sub("", ln).strip() for ln in (log or "").splitlines() if ln.strip()]
    errors = [ln for ln in lines if re.search(r"error|fail|can.?t|cannot|must not|refus|invalid", ln, re.I)]
    return (errors or lines or ["(no output)"])[-1][:300]


def judge(bench: Bench, rc: int | None, output: str | None, log: str | None, seconds: float) -> Reading:
    """The reading of one run of ``bench`` asked to measure ``seconds``: ``rc`` its exit status
    (None: it never finished), ``output`` its result (YAML/JSON file, or stdout), ``log`` its
    messages.  Raises ToolFailure with the reason when the run does not count."""
    if rc is None:
        raise ToolFailure(f"{bench.tool} did not finish ({_last_words(log)})")
    if rc != 0:
        raise ToolFailure(f"{bench.tool} exited with status {rc}: {_last_words(log or output)}")
    if not (output or "").strip():
        raise ToolFailure(f"{bench.tool} printed no rate: {_last_words(log)}")
    reader = {"stress-ng": stress_ng, "fio": fio, "iperf3": iperf3, "sockperf": sockperf}[bench.tool]
    reading = reader(bench, output or "", log)
    if not (math.isfinite(reading.value) and reading.value > 0):
        raise ToolFailure(f"{bench.tool} printed no rate (it reported {reading.value:g} {bench.unit})")
    wanted = expected_seconds(bench, seconds)
    if reading.seconds < SHORT * wanted:
        raise ToolFailure(f"{bench.tool} ran short: it measured {reading.seconds:.2f} s of {wanted:.2f} s")
    return reading


def expected_seconds(bench: Bench, seconds: float) -> float:
    """How long the tool itself counts when asked for ``seconds``: iperf3 leaves out its omitted
    start, sockperf its warm-up; fio's runtime excludes its ramp already."""
    if bench.tool == "sockperf":
        return max(0.1, seconds - SOCKPERF_WARMUP_S)
    return seconds  # iperf3's -O and fio's ramp come before the seconds they report


def _load_yaml(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ToolFailure(f"stress-ng's YAML does not parse ({str(e).splitlines()[0]})") from None


def stress_ng(bench: Bench, output: str, log: str | None) -> Reading:
    """stress-ng's ``--yaml`` file: the stressor's bogo-ops per second of wall time."""
    doc = _load_yaml(output)
    name = next(a for a in bench.args if a.startswith("--")).removeprefix("--")
    rows = [m for m in (doc or {}).get("metrics") or [] if isinstance(m, dict) and m.get("stressor") == name]
    if not rows:
        raise ToolFailure(f"stress-ng printed no rate for {name}: {_last_words(log)}")
    row = rows[0]
    try:
        rate, wall = float(row["bogo-ops-per-second-real-time"]), float(row["wall-clock-time"])
    except (KeyError, TypeError, ValueError):
        raise ToolFailure(f"stress-ng printed no rate for {name}: {_last_words(log)}") from None
    extra = {k.replace("-", "_"): float(v) for k, v in row.items()
             if k.startswith("memory-") and isinstance(v, (int, float))}
    return Reading(rate, wall, extra)


def _load_json(tool: str, text: str) -> Any:
    # fio may print notes before its JSON document
    start = text.find("{")
    try:
        return json.loads(text[start:] if start >= 0 else text)
    except ValueError as e:
        raise ToolFailure(f"{tool}'s JSON does not parse ({e})") from None


def fio(bench: Bench, output: str, log: str | None) -> Reading:
    """fio's JSON: IOPS (random) or MiB/s (sequential) of the one job, its runtime in the
    direction the benchmark does (ramp excluded)."""
    doc = _load_json("fio", output)
    jobs = doc.get("jobs") if isinstance(doc, dict) else None
    if not jobs:
        raise ToolFailure(f"fio reported no job: {_last_words(log)}")
    job = jobs[0]
    if job.get("error"):
        raise ToolFailure(f"fio's job failed with error {job['error']}: {_last_words(log)}")
    side = job.get("write" if "write" in bench.args[0] else "read") or {}
    try:
        iops, kib_s, runtime_ms = float(side["iops"]), float(side["bw"]), float(side["runtime"])
    except (KeyError, TypeError, ValueError):
        raise ToolFailure(f"fio printed no rate: {_last_words(log)}") from None
    value = iops if bench.unit == "IOPS" else kib_s / 1024
    lat = (side.get("clat_ns") or {}).get("mean")
    extra = {"iops": iops, "mib_s": kib_s / 1024, **({"clat_mean_us": float(lat) / 1000} if lat else {})}
    return Reading(value, runtime_ms / 1000, extra)


def iperf3(bench: Bench, output: str, log: str | None) -> Reading:
    """iperf3's ``-J``: the receiver's bits per second (omitted start excluded), in Gbit/s."""
    doc = _load_json("iperf3", output)
    if not isinstance(doc, dict):
        raise ToolFailure("iperf3's JSON is not an object")
    if doc.get("error"):
        raise ToolFailure(f"iperf3: {doc['error']}")
    end = doc.get("end") or {}
    recv = end.get("sum_received") or {}
    try:
        bps, secs = float(recv["bits_per_second"]), float(recv["seconds"])
    except (KeyError, TypeError, ValueError):
        raise ToolFailure(f"iperf3 printed no rate: {_last_words(log)}") from None
    sent = end.get("sum_sent") or {}
    extra = {"retransmits": float(sent.get("retransmits", 0) or 0)}
    return Reading(bps / 1e9, secs, extra)


_SOCKPERF_ERROR = re.compile(r"sockperf: ERROR: (.*)")
_VALID = re.compile(r"\[Valid Duration\] RunTime=([\d.]+) sec; SentMessages=(\d+); ReceivedMessages=(\d+)")
_PCT = re.compile(r"percentile\s+([\d.]+)\s*=\s*([\d.]+)")
_AVG = re.compile(r"avg-latency=([\d.]+)")


def sockperf(bench: Bench, output: str, log: str | None) -> Reading:
    """sockperf ping-pong's summary: the median one-way latency (half the round trip), in µs."""
    text = _ANSI.sub("", output + "\n" + (log or ""))
    err = _SOCKPERF_ERROR.search(text)
    if err:
        raise ToolFailure(f"sockperf: {err.group(1).strip()}")
    valid = _VALID.search(text)
    pct = {float(p): float(v) for p, v in _PCT.findall(text)}
    if valid is None or 50.0 not in pct or int(valid.group(3)) == 0:
        raise ToolFailure(f"sockperf printed no latency: {_last_words(text)}")
    extra = {f"p{p:g}": v for p, v in pct.items() if p in (25.0, 75.0, 99.0)}
    avg = _AVG.search(text)
    if avg:
        extra["avg"] = float(avg.group(1))
    extra["messages"] = float(valid.group(3))
    return Reading(pct[50.0], float(valid.group(1)), extra)


def instance_run(bench: Bench, results: Mapping[str, str], seconds: float) -> Reading:
    """The reading of an ``instance`` benchmark from the marker channel's results
    (``runtimes.throughput.script``); ToolFailure when it did not run or did not count."""
    rc_text = results.get(key(bench.name, "rc"))
    log = decode(results.get(key(bench.name, "log")))
    if rc_text is None:
        raise ToolFailure(f"{bench.tool} did not run ({bench.name}: the instance reported no exit status)")
    try:
        rc: int | None = int(rc_text)
    except ValueError:
        rc = None
    return judge(bench, rc, decode(results.get(key(bench.name, "out"))), log, seconds)
