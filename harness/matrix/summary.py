"""The matrix page: which cells ran (and why not), enforcement per cell, the CPU-accuracy chart.

Reads only what a matrix directory holds (``matrix.json`` and the cells' run
directories); writes ``matrix.md`` and ``cpu_ratio_by_cell.png``/``.svg`` beside
them.  The full per-series report comes from ``isobench report`` over the
cells' run directories (series per kernel × cgroup × backend).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from harness import results


def cells(matrix_dir: Path) -> list[dict[str, Any]]:
    return list(json.loads((matrix_dir / "matrix.json").read_text()).get("cells", []))


def rows(matrix_dir: Path) -> pd.DataFrame:
    """Every enforcement row (of the measurements validate gates) of every cell, with ``cell`` and
    ``accel`` columns."""
    from harness.measure import catalogue

    gated = catalogue().gated()
    frames = []
    for c in cells(matrix_dir):
        if not c.get("run_dir"):
            continue
        df = results.load(matrix_dir / c["run_dir"])
        if df.empty:
            continue
        df = df[df["measurement"].isin(gated)].copy()
        df["cell"], df["cell_accel"] = c["cell"], c["accel"]
        frames.append(df)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _p(df: pd.DataFrame, key: str) -> pd.Series:
    """A grid parameter as numbers (``results.load`` flattens params into ``param_*`` columns)."""
    col = f"param_{key}"
    return pd.to_numeric(df[col], errors="coerce") if col in df.columns else pd.Series(float("nan"), df.index)


def enforcement(df: pd.DataFrame) -> pd.DataFrame:
    """Per cell × backend: cpu_ratio where the quota limits, OOM kills above the limit, forks refused."""
    if df.empty:
        return pd.DataFrame()
    ok = df[df["status"] == "ok"]
    out = []
    for (cell, backend), g in df.groupby(["cell", "backend"], sort=False):
        o = ok[(ok["cell"] == cell) & (ok["backend"] == backend)]
        cpu = o[(o["metric"] == "cpu_ratio") & (_p(o, "quota") < _p(o, "threads"))]["value"]
        oom = o[(o["metric"] == "oom_killed") & (_p(o, "mib") > _p(o, "limit_mib"))]["value"]
        refused = o[(o["metric"] == "pids_refused") & (_p(o, "count") > _p(o, "limit"))]["value"]
        failed = g[g["status"] != "ok"]
        reasons = sorted({str(e).split(" (run isobench")[0][:140] for e in failed["error"].dropna()})
        out.append({
            "cell": cell, "backend": backend,
            "cpu_ratio (quota limits)": f"{cpu.median():.3f} [{cpu.min():.3f}–{cpu.max():.3f}]" if len(cpu) else "–",
            "OOM-killed above limit": f"{int(oom.sum())}/{len(oom)}" if len(oom) else "–",
            "forks refused at limit": f"{int((refused > 0).sum())}/{len(refused)}" if len(refused) else "–",
            "failed samples": f"{len(failed)}" + (f": {'; '.join(reasons)}" if reasons else ""),
        })
    return pd.DataFrame(out)


def cpu_chart(df: pd.DataFrame, out_dir: Path, footnote: str, all_cells: list[str] | None = None) -> list[str]:
    """delivered/requested CPU per cell and backend, every sample a dot, the median a bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    o = df[(df["status"] == "ok") & (df["metric"] == "cpu_ratio")]
    o = o[_p(o, "quota") < _p(o, "threads")]
    if o.empty:
        return []
    cells_ = all_cells or list(dict.fromkeys(df["cell"]))  # a cell without samples still gets its slot
    backends = list(dict.fromkeys(o["backend"]))
    fig, ax = plt.subplots(figsize=(7.0, 3.6))
    width = 0.8 / len(backends)
    for j, b in enumerate(backends):
        for i, c in enumerate(cells_):
            v = o[(o["cell"] == c) & (o["backend"] == b)]["value"].astype(float)
            x = i - 0.4 + width * (j + 0.5)
            if len(v):
                ax.bar(x, v.median(), width * 0.9, color=f"C{j}", alpha=0.55, label=b if i == 0 else None)
                ax.plot([x] * len(v), v, "o", color=f"C{j}", markersize=3)
            else:
                ax.text(x, 0.02, "no samples", rotation=90, fontsize=7, ha="center", va="bottom")
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.axhspan(0.97, 1.03, color="grey", alpha=0.15, label="±3 %")
    ax.set_xticks(range(len(cells_)))
    ax.set_xticklabels(cells_)
    ax.set_ylabel("delivered / requested CPU")
    ax.set_title("CPU quota accuracy per kernel × cgroup version (quota below demand)")
    ax.legend(fontsize=8, loc="lower right")
    fig.text(0.01, 0.01, footnote, fontsize=7, ha="left", va="bottom")
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    written = []
    for ext in ("png", "svg"):
        fig.savefig(out_dir / f"cpu_ratio_by_cell.{ext}", dpi=150)
        written.append(f"cpu_ratio_by_cell.{ext}")
    plt.close(fig)
    return written


def write(matrix_dir: Path) -> Path:
    cs = cells(matrix_dir)
    df = rows(matrix_dir)
    accels = sorted({c["accel"] for c in cs})
    foot = ("guests emulated (TCG): figures from an emulated CPU" if accels == ["tcg"]
            else f"guest accelerator: {', '.join(accels)}")
    charts = cpu_chart(df, matrix_dir, foot, [c["cell"] for c in cs])
    cell_table = pd.DataFrame([{
        "cell": c["cell"], "accel": c["accel"] + (" (emulated)" if c["accel"] == "tcg" else ""),
        "status": c["status"], "seconds": c["seconds"],
        "samples": ", ".join(f"{n} {k}" for k, n in (c.get("samples") or {}).items()) or "–",
        "why / notes": "; ".join(filter(None, [c.get("reason", "")] +
                                         [n for n in c.get("cgroup_notes", []) if "not available" in n])) or "–",
    } for c in cs])
    lines = ["# Kernel × cgroup matrix", "", f"{foot}.", "", "## Cells", "", cell_table.to_markdown(index=False), ""]
    enf = enforcement(df)
    if not enf.empty:
        lines += ["## Enforcement per cell", "", enf.to_markdown(index=False), ""]
    lines += [f"![CPU quota accuracy per cell]({c})" for c in charts if c.endswith(".png")]
    path = matrix_dir / "matrix.md"
    path.write_text("\n".join(lines) + "\n")
    return path
