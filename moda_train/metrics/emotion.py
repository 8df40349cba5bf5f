"""Emotion accuracy: of the sequences generated for emotion e, the share a motion-space emotion classifier
(`moda_train.lit.emotion_module`) assigns to e, over the 8 classes of `moda_train.core.motion_layout.EMOTIONS`.

`emotion_accuracy(targets, predictions)` takes the emotion each sequence was generated for and the class the
classifier chose; sequences generated without an emotion (class 8, `NULL_EMOTION`) are left out, because there
is nothing to be right about.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from moda_train.core.motion_layout import EMOTIONS, NULL_EMOTION


def emotion_accuracy(targets: Sequence[int], predictions: Sequence[int]) -> dict:
    """Accuracy, per-class accuracy and the confusion matrix of sequences with a target emotion.

    Returns {"accuracy": float or None (no target emotion at all), "count": sequences counted,
    "per_class": {emotion name: share or None when no sequence was generated for it},
    "confusion": 8 x 8 counts, rows = emotion generated for, columns = emotion classified}.
    """
    targets, predictions = np.asarray(targets, int).ravel(), np.asarray(predictions, int).ravel()
    if len(targets) != len(predictions):
        raise ValueError(f"{len(targets)} target emotions but {len(predictions)} predictions")
    classes = len(EMOTIONS)
    if ((predictions < 0) | (predictions >= classes)).any() or ((targets < 0) | (targets > NULL_EMOTION)).any():
        raise ValueError(f"emotions must be class ids: targets 0..{NULL_EMOTION}, predictions 0..{classes - 1}")
    keep = targets != NULL_EMOTION
    confusion = np.zeros((classes, classes), int)
    np.add.at(confusion, (targets[keep], predictions[keep]), 1)
    rows = confusion.sum(1)
    return {
        "accuracy": float(np.trace(confusion) / rows.sum()) if rows.sum() else None,
        "count": int(rows.sum()),
        "per_class": {
            name: float(confusion[i, i] / rows[i]) if rows[i] else None for i, name in enumerate(EMOTIONS)
        },
        "confusion": confusion.tolist(),
    }
