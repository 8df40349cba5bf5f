"""Validation figures say what they show: labelled axes and a legend on every panel."""

import numpy as np

from moda_train.lit.figures import motion_curves


def test_motion_curves_label_axes_and_legends():
    rng = np.random.default_rng(0)
    generated, truth = rng.normal(size=(2, 2, 80, 70))
    figure = motion_curves(generated, truth, ["a", "b"], label="reconstructed")
    for axis in figure.axes:
        assert axis.get_xlabel() == "frame" and axis.get_ylabel()
        legend = [text.get_text() for text in axis.get_legend().get_texts()]
        assert "true" in legend and ("reconstructed" in legend or "pitch" in legend)
    pose_legend = [text.get_text() for text in figure.axes[1].get_legend().get_texts()]
    assert pose_legend == ["pitch", "yaw", "roll", "true", "reconstructed"]
