"""Validation figures: generated vs. ground-truth motion curves."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # headless: figures go to TensorBoard, never to a screen
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.lines import Line2D

from moda_train.core.motion_layout import LIP_DIMS, ROTATION, ROTATION_NAMES


def motion_curves(
    generated: np.ndarray, truth: np.ndarray, keys: list[str], label: str = "generated"
) -> plt.Figure:
    """One row per window: mean lip displacement and the three rotation angles, `label` (solid) vs. true (dashed).

    Both axes are labelled in the motion's raw units (lip: the layout's expression units; pose: degrees) against
    the frame index, and every panel carries its legend, so a figure read alone in TensorBoard says what it shows.
    """
    rows = len(generated)
    figure, axes = plt.subplots(rows, 2, figsize=(10, 2.4 * rows), squeeze=False)
    style = [Line2D([], [], color="k", linestyle="--", label="true"), Line2D([], [], color="k", label=label)]
    for row, (gen, real, key) in enumerate(zip(generated, truth, keys)):
        lip_axis, pose_axis = axes[row]
        lip_axis.plot(real[:, list(LIP_DIMS)].mean(1), "k--", label="true")
        lip_axis.plot(gen[:, list(LIP_DIMS)].mean(1), "C3", label=label)
        lip_axis.set_title(f"{key}: lip", fontsize=8)
        lip_axis.set(xlabel="frame", ylabel="mean of the 18 lip dims")
        lip_axis.legend(fontsize=7, loc="upper right")
        for index, name in enumerate(ROTATION_NAMES):
            pose_axis.plot(real[:, ROTATION][:, index], f"C{index}--")
            pose_axis.plot(gen[:, ROTATION][:, index], f"C{index}", label=name)
        pose_axis.set_title(f"{key}: head rotation", fontsize=8)
        pose_axis.set(xlabel="frame", ylabel="degrees")
        handles, _ = pose_axis.get_legend_handles_labels()
        pose_axis.legend(handles=handles + style, fontsize=7, loc="upper right", ncol=5)
    figure.tight_layout()
    return figure
