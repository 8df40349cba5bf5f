"""Validation figures: generated vs. ground-truth motion curves."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # headless: figures go to TensorBoard, never to a screen
import matplotlib.pyplot as plt
import numpy as np

from moda_train.core.motion_layout import LIP_DIMS, ROTATION, ROTATION_NAMES


def motion_curves(generated: np.ndarray, truth: np.ndarray, keys: list[str]) -> plt.Figure:
    """One row per window: mean lip displacement and the three rotation angles, generated (solid) vs. true."""
    rows = len(generated)
    figure, axes = plt.subplots(rows, 2, figsize=(10, 2.2 * rows), squeeze=False)
    for row, (gen, real, key) in enumerate(zip(generated, truth, keys)):
        lip_axis, pose_axis = axes[row]
        lip_axis.plot(real[:, list(LIP_DIMS)].mean(1), "k--", label="true")
        lip_axis.plot(gen[:, list(LIP_DIMS)].mean(1), "C3", label="generated")
        lip_axis.set_title(f"{key}: lip", fontsize=8)
        for index, name in enumerate(ROTATION_NAMES):
            pose_axis.plot(real[:, ROTATION][:, index], f"C{index}--")
            pose_axis.plot(gen[:, ROTATION][:, index], f"C{index}", label=name)
        pose_axis.set_title(f"{key}: pitch/yaw/roll (deg); dashed = true", fontsize=8)
    axes[0][0].legend(fontsize=7)
    axes[0][1].legend(fontsize=7)
    figure.tight_layout()
    return figure
