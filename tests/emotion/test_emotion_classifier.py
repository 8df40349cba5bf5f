"""The motion-space emotion classifier: trained by the framework, it recognises held-out clips, and the emotion
accuracy it gives moves when motion is scored against the wrong emotion."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import webdataset as wds

from moda_train.core.checkpoint import read_checkpoint
from moda_train.core.motion_layout import EMOTIONS, MOTION_DIM, NULL_EMOTION
from moda_train.core.sample import decode_sample
from moda_train.lit.emotion_module import EmotionLightningModule, load_classifier
from moda_train.metrics.emotion import emotion_accuracy
from moda_train.models.emotion_classifier import EmotionClassifier, EmotionClassifierConfig


def held_out_clips(shards, patterns: tuple[str, ...] = ("val-*.tar",)) -> list[tuple[np.ndarray, int]]:
    """The clips of the shards matching `patterns` (never trained on) with a known emotion: raw motion [T, 70] and
    label."""
    clips = []
    for path in sorted(p for pattern in patterns for p in shards.glob(pattern)):
        for sample in wds.WebDataset(str(path), shardshuffle=False):
            clip = decode_sample(sample)
            if clip.emotion != NULL_EMOTION:
                clips.append((clip.motion, clip.emotion))
    return clips


def test_classifier_shapes_and_bad_input():
    model = EmotionClassifier(EmotionClassifierConfig(hidden_size=8, num_layers=1))
    assert model(torch.zeros(3, 17, MOTION_DIM)).shape == (3, len(EMOTIONS))
    with pytest.raises(ValueError, match=r"\[B, T, 70\]"):
        model(torch.zeros(3, 17, 63))
    with pytest.raises(ValueError, match="kernel_size=4 must be odd"):
        EmotionClassifierConfig(kernel_size=4)


def test_unlabelled_windows_are_left_out_of_the_loss():
    module = EmotionLightningModule({"task": "emotion", "data": {"train_shards": "x", "stats_path": "y"}}).eval()
    batch = {"motion": torch.randn(4, 20, MOTION_DIM), "emotion": torch.tensor([NULL_EMOTION] * 4)}
    loss = module._shared_step(batch, "val")
    assert float(loss.detach()) == 0.0
    batch["emotion"] = torch.tensor([0, 1, NULL_EMOTION, NULL_EMOTION])
    logits = module.classifier(batch["motion"])
    expected = torch.nn.functional.cross_entropy(logits[:2], batch["emotion"][:2])
    torch.testing.assert_close(module._shared_step(batch, "val"), expected)


@pytest.mark.slow
def test_checkpoint_is_an_emotion_checkpoint(emotion_checkpoint):
    checkpoint = read_checkpoint(emotion_checkpoint, "emotion")
    assert checkpoint["hyper_parameters"]["config"]["task"] == "emotion"
    # What made its shards (their stats.json), for evaluation's extractor check; loading gives it back.
    assert checkpoint["shard_backends"] == {"motion_backend": "synthetic", "audio_backend": "logmel"}
    assert load_classifier(emotion_checkpoint).shard_backends == checkpoint["shard_backends"]
    with pytest.raises(ValueError, match="is not an ALSE checkpoint"):
        read_checkpoint(emotion_checkpoint, "alse")


@pytest.mark.slow
def test_classifier_beats_chance_on_held_out_clips(emotion_checkpoint, emotion_shards):
    classifier = load_classifier(emotion_checkpoint)
    clips = held_out_clips(emotion_shards)
    assert len(clips) >= 8
    predicted = [classifier.predict(motion)[0] for motion, _ in clips]
    result = emotion_accuracy([label for _, label in clips], predicted)
    assert result["count"] == len(clips)
    assert result["accuracy"] >= 0.6, result  # chance is 1/8
    assert np.trace(result["confusion"]) == round(result["accuracy"] * len(clips))


@pytest.mark.slow
def test_accuracy_moves_when_generation_asks_for_the_wrong_emotion(emotion_checkpoint, emotion_shards):
    """Real held-out clips of emotion A scored as 'generated for A', then as 'generated for another emotion B':
    the metric must drop, and the confusion matrix must put the clips in row B, column A."""
    classifier = load_classifier(emotion_checkpoint)
    clips = held_out_clips(emotion_shards)
    predicted = [classifier.predict(motion)[0] for motion, _ in clips]
    right = emotion_accuracy([label for _, label in clips], predicted)
    wrong_targets = [(label + 1) % len(EMOTIONS) for _, label in clips]
    wrong = emotion_accuracy(wrong_targets, predicted)
    assert wrong["accuracy"] < right["accuracy"] - 0.4, (right, wrong)
    first_motion, first_label = clips[0]
    if predicted[0] == first_label:
        assert wrong["confusion"][(first_label + 1) % len(EMOTIONS)][first_label] >= 1
