"""The demo corpus acts its emotion labels: a tiny classifier trained on the training speakers' clips recognises
the clips of the held-out validation and test speakers far above chance."""

from __future__ import annotations

import numpy as np
import pytest

from moda_train.core.motion_layout import EMOTIONS
from moda_train.experiment import load_experiment
from moda_train.launch.run import run_experiment
from moda_train.lit.emotion_module import load_classifier
from moda_train.metrics.emotion import emotion_accuracy
from tests.emotion.conftest import TINY_EMOTION, shard_overrides
from tests.emotion.test_emotion_classifier import held_out_clips

pytestmark = pytest.mark.slow


def test_classifier_recognises_held_out_demo_speakers(demo_shards, tmp_path):
    cfg, tree = load_experiment(
        TINY_EMOTION, [*shard_overrides(demo_shards), f"train.out_dir={tmp_path}", "train.run_name=demo"]
    )
    run_dir = run_experiment(cfg, tree, TINY_EMOTION)
    classifier = load_classifier(run_dir / "checkpoints" / "last.ckpt")
    clips = held_out_clips(demo_shards, ("val-*.tar", "test-*.tar"))
    labels = [label for _, label in clips]
    assert len(set(labels)) >= 2, labels  # the held-out speakers act more than one emotion
    result = emotion_accuracy(labels, [classifier.predict(motion)[0] for motion, _ in clips])
    # chance: the share of the most common label (a classifier that always says it)
    chance = max(np.bincount(labels, minlength=len(EMOTIONS))) / len(labels)
    assert result["accuracy"] >= max(0.75, chance + 0.25), result
