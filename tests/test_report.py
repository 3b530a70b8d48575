"""isobench report on synthetic run directories (written with the real RunWriter)."""

from __future__ import annotations

import argparse
import json
import os
import struct
from pathlib import Path

import pandas as pd
import pytest

from harness import report
from harness.commands import report as command
from harness.report import model, render, style
from harness.results import RunWriter
from tests import synth

CHARTS = ("startup_latency", "startup_phases", "memory_overhead", "density", "cpu_quota", "cpu_ratio",
          "mem_limit", "pids_limit")


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


@pytest.fixture(scope="module")
def full(tmp_path_factory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("full")
    run = synth.make_run(tmp / "results", run_id="run-full")
    return run, report.build([run], tmp / "report")


def test_complete_run_produces_every_artifact(full):
    _, out = full
    for name in CHARTS:
        png = out / "charts" / f"{name}.png"
        w, h = png_size(png)
        assert w == 7 * style.DPI and 300 < h < 1100, f"{name}: {w}x{h}"
        assert (out / "charts" / f"{name}.svg").read_text().lstrip().startswith("<?xml")
    for m in ("startup", "memory", "density", "cpu_quota", "mem_limit", "pids_limit", "summary"):
        df = pd.read_csv(out / "tables" / f"{m}.csv")
        assert not df.empty and {"series", "median", "ci_lo", "ci_hi", "warnings", "failed"} <= set(df.columns)
    summary = pd.read_csv(out / "tables" / "summary.csv")
    ready = summary[(summary.metric == "launch_to_ready") & (summary.backend == "container")
                    & (summary.workload == "noop")].iloc[0]
    assert ready["n"] == 10 and 10 < ready["median"] < 14  # the warm-up is not counted


def test_markdown_and_html_state_status_host_and_warnings(full):
    _, out = full
    md = (out / "report.md").read_text()
    html = (out / "report.html").read_text()
    for text in (md, html):
        assert "completed" in text
        assert "hostA" in text and "6.1.0-56-amd64" in text and "Synthetic CPU" in text
        assert "vm (TCG, emulated)" in text and "emulated (TCG)" in text
        assert "Warnings" in text and "1 failed" in text  # the synthetic vm timeout
        assert "Failed samples" in text and "1× InstanceTimeout: guest did not become ready in 60 s" in text
        assert "Startup vs. the floor" in text and "Peers" in text
    for name in (*CHARTS, "headline"):
        assert f"(charts/{name}.png)" in md
    # self-contained: charts are data URIs, nothing is loaded from outside
    assert html.count('src="data:image/png;base64,') == len(CHARTS) + 1
    assert 'src="charts/' not in html and "http://" not in html and "https://" not in html


def test_charts_use_the_fixed_palette_and_the_footnote(full):
    _, out = full
    svg = (out / "charts" / "startup_latency.svg").read_text()
    for backend in ("bare", "container", "vm"):
        assert style.colour(backend).lower() in svg.lower()
    assert "host hostA" in svg and "cgroup v1" in svg and "vm: emulated (TCG)" in svg
    assert "vm (TCG, emulated)" in svg
    notes = (out / "charts" / "mem_limit.svg").read_text()
    assert "guest memory size is the limit" in notes


def test_interrupted_half_way(tmp_path):
    run = synth.make_run(tmp_path / "results", run_id="run-half", measurements=("startup", "memory"),
                         finish=False, reps=3)
    synth.interrupt(run)
    out = report.build([run], tmp_path / "report")
    md = (out / "report.md").read_text()
    assert "**Status:** interrupted" in md
    assert "No density rows in this run." in md and "No pids_limit rows in this run." in md
    assert (out / "charts" / "startup_latency.png").exists()
    assert not (out / "charts" / "density.png").exists()
    assert "too few samples" in md and "(n=3)" in md and "n ≥ 6 needed" in md
    assert "interrupted" in (out / "report.html").read_text()


def test_run_killed_before_its_first_sample(tmp_path):
    w = RunWriter(tmp_path / "results", {"host": synth.host()}, run_id="run-empty")
    os.close(w._fd)  # killed: its samples file is closed by the kernel, its manifest never rewritten
    synth.interrupt(w.dir)
    out = report.build([w.dir], tmp_path / "report")
    md = (out / "report.md").read_text()
    assert "interrupted" in md and "No startup rows in this run." in md
    assert (out / "report.html").exists() and (out / "tables" / "summary.csv").exists()


def test_two_hosts_merge_into_one_comparison(tmp_path):
    a = synth.make_run(tmp_path / "results", run_id="run-a", hostname="hostA",
                       measurements=("startup", "memory", "density"), reps=6)
    b = synth.make_run(tmp_path / "results", run_id="run-b", hostname="hostB", kernel="6.8.0", accel="kvm",
                       backends=("bare", "container", "oci:runc", "vm"), measurements=("startup", "memory", "density"),
                       reps=6, seed=1)
    out = report.build([a, b], tmp_path / "report")
    summary = pd.read_csv(out / "tables" / "summary.csv")
    series = set(summary["series"])
    assert {"container @ hostA", "container @ hostB", "vm (TCG, emulated) @ hostA", "vm @ hostB",
            "oci:runc @ hostB"} <= series
    svg = (out / "charts" / "startup_latency.svg").read_text()
    assert "host hostA" in svg and "host hostB" in svg and "kernel 6.8.0" in svg and "vm: KVM" in svg
    # the peer section compares oci:runc with container on the same host
    peers = pd.read_csv(out / "tables" / "peers.csv")
    row = peers[(peers.metric == "launch_to_ready") & (peers.workload == "noop")].iloc[0]
    assert row["reference"] == "container @ hostB"
    assert 2.0 < row["ratio"] < 3.0 and row["ci_lo"] <= row["ratio"] <= row["ci_hi"]
    html = (out / "report.html").read_text()
    assert "run-a" in html and "run-b" in html


def test_floor_ratios(tmp_path):
    run = synth.make_run(tmp_path / "results", run_id="run-floor", backends=("container",),
                         measurements=("startup",), finish=False)
    w_dir = run
    # a floor measurement next to the container's startup: 3 ms to unshare+exec
    from harness.results import SAMPLES

    with open(w_dir / SAMPLES, "a") as fh:
        import json
        for rep in range(8):
            fh.write(json.dumps({"run_id": "run-floor", "seq": 1000 + rep, "backend": "container", "workload": "noop",
                                 "measurement": "startup", "metric": "floor_unshare_exec", "value": 3.0 + rep * 0.01,
                                 "unit": "ms", "params": {}, "repetition": rep, "warmup": False, "status": "ok",
                                 "error": None, "accel": None, "note": None, "case": "startup/noop"}) + "\n")
    out = report.build([run], tmp_path / "report")
    floor = pd.read_csv(out / "tables" / "floor.csv")
    assert len(floor) == 1
    assert floor.iloc[0]["ratio"] == pytest.approx(12 / 3.035, rel=0.1)
    assert "Startup / floor" in (out / "report.md").read_text()


def test_cli_main(tmp_path, capsys):
    p = argparse.ArgumentParser()
    command.add_arguments(p)
    assert command.main(p.parse_args([str(tmp_path / "nope")])) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "not a run directory" in err
    run = synth.make_run(tmp_path / "results", run_id="run-cli", backends=("bare",), measurements=("pids_limit",))
    assert command.main(p.parse_args([str(run), "--out", str(tmp_path / "r")])) == 0
    assert str(tmp_path / "r" / "report.html") in capsys.readouterr().out
    assert report.default_out([run]) == Path("reports") / "run-cli"
    assert report.default_out([run, run.parent / "x"]).name == "compare-run-cli-x"


def test_import_is_light():
    import subprocess
    import sys

    code = ("import sys, harness.cli, harness.report, harness.compare, harness.validate; "
            "harness.cli._parser(); "  # every command's module, as `isobench --help` imports them
            "print(any(m in sys.modules for m in ('pandas', 'matplotlib', 'scipy', 'numpy')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).parent.parent)
    assert out.stdout.strip() == "False"


def test_card_for_a_slide(full, tmp_path, capsys):
    run, _ = full
    p = argparse.ArgumentParser()
    command.add_arguments(p)
    assert command.main(p.parse_args([str(run), "--card", "--out", str(tmp_path / "card")])) == 0
    assert f"card: {tmp_path / 'card' / 'card.png'}" in capsys.readouterr().out
    assert png_size(tmp_path / "card" / "card.png") == (1600, 900)
    assert sorted(x.name for x in (tmp_path / "card").iterdir()) == ["card.png", "card.svg"]  # only the card
    svg = (tmp_path / "card" / "card.svg").read_text()
    for fact in ("host hostA", "Synthetic CPU", "kernel 6.1.0-56-amd64", "cgroup v1", "vm: emulated (TCG)",
                 "commit", "startup (launch → ready)", "memory (PSS, idle)", "CPU delivered / expected"):
        assert fact in svg, fact


def test_no_card_without_bare_metal(tmp_path, capsys):
    run = synth.make_run(tmp_path / "results", run_id="run-nobare", backends=("container",),
                         measurements=("startup",), reps=6)
    p = argparse.ArgumentParser()
    command.add_arguments(p)
    assert command.main(p.parse_args([str(run), "--card", "--out", str(tmp_path / "card")])) == 2
    assert "needs two backends" in capsys.readouterr().err
    assert not (tmp_path / "card" / "card.png").exists()


def test_cpu_periods_chart_reads_the_per_period_series(tmp_path):
    import json

    from harness.report import charts_periods as periods
    from harness.report.model import load as load_report

    run = synth.make_run(tmp_path / "results", run_id="per", measurements=("cpu_quota",), backends=("bare",))
    lines = [{"backend": "bare", "params": {"quota": q, "threads": t, "period_ms": 10}, "repetition": 0,
              "warmup": False, "accel": None, "period_ms": 10.0, "stride": 1, "quota": q,
              "period": [0, 1, 3], "ratios": [1.33, 0.0, 1.0]} for q, t in ((0.5, 1), (1.0, 1))]
    (run / "logs").mkdir(exist_ok=True)
    (run / "logs" / periods.PERIODS_FILE).write_text("".join(json.dumps(x) + "\n" for x in lines) + "{cut")
    series = list(periods.load_series([run]))
    assert [(s.quota, s.index) for s in series] == [(0.5, [0, 1, 3]), (1.0, [0, 1, 3])]
    chart = periods.cpu_periods(load_report([run]), "cpu_quota")
    assert chart is not None and chart.name == "cpu_periods"
    assert "Finding: 10 ms · quota 1 · 1 thr (at demand)" in chart.caption  # the at-quota 10 ms cell


def test_the_hosts_table_keeps_the_host_accelerator_beside_the_guests(tmp_path: Path) -> None:
    """A host's own accelerator (a GPU) and how the guests ran (kvm/tcg) are two facts."""
    run = synth.make_run(tmp_path, backends=("bare", "vm"), measurements=("startup",), reps=2)
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["host"]["accelerator"] = "NVIDIA H100 80GB HBM3, 550.54.15"
    (run / "manifest.json").write_text(json.dumps(manifest))
    facts = render.hosts_table(model.load([run]))
    table = dict(zip(facts[""], facts.iloc[:, 1], strict=True))
    assert table["accelerator"] == "NVIDIA H100 80GB HBM3, 550.54.15"
    assert table[render.GUEST_ACCELERATOR] == "vm: emulated (TCG)"
