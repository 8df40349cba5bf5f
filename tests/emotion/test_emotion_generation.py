"""The emotion condition reaches the generated motion: a tiny MMDiT trained by `run_experiment` on shards whose
expression depends on the emotion label generates held-out windows with `MoDALightningModule.sample` (the
sampler the evaluation callback and `MotionGenerator` call, with the checkpoint's guidance), once for each
window's own emotion and once for another; the emotion classifier scores both."""

from __future__ import annotations

import pytest
import torch

from moda_train.core.config_loader import CONFIGS_ROOT
from moda_train.core.motion_layout import EMOTIONS, NULL_EMOTION
from moda_train.core.stats import MotionStats
from moda_train.data.synthetic import emotion_offset, write_synthetic_shards
from moda_train.data.wds import ValidationDataset
from moda_train.experiment import load_experiment
from moda_train.generation.pipeline import load_checkpoint
from moda_train.launch.run import run_experiment
from moda_train.lit.emotion_module import load_classifier
from moda_train.metrics.emotion import emotion_accuracy
from tests.emotion.conftest import CLIP_FRAMES, shard_overrides

TINY_MMDIT = CONFIGS_ROOT / "experiments" / "mmdit_tiny_cpu.yaml"
# With the conftest's emotion_signal=0.5 and the default flow.drop_prev_motion=0, 200 steps teach the tiny MMDiT to
# continue the previous motion's expression rather than follow the label: previous motion is always there and, in
# these shards, always shows the clip's own emotion. A longer offset and previous motion dropped half the time
# (the label is then the only source of the expression) make it learn the condition within the steps.
SIGNAL = 1.5
STEPS = 200


@pytest.fixture(scope="session")
def strong_emotion_shards(tmp_path_factory):
    return write_synthetic_shards(
        tmp_path_factory.mktemp("strong_emotion_shards"), num_clips=48, frames=CLIP_FRAMES, clips_per_shard=16,
        val_clips=16, emotion_signal=SIGNAL,
    )  # fmt: skip


@pytest.fixture(scope="session")
def emotion_mmdit(strong_emotion_shards, tmp_path_factory):
    """The tiny MMDiT (one single-stream block) trained STEPS steps on `strong_emotion_shards`."""
    cfg, tree = load_experiment(
        TINY_MMDIT,
        [
            *shard_overrides(strong_emotion_shards), f"train.out_dir={tmp_path_factory.mktemp('mmdit_runs')}",
            "train.run_name=emotion", f"train.max_steps={STEPS}", f"train.val_every_n_steps={STEPS}",
            f"train.checkpoint_every_n_steps={STEPS}", "model.depth_single_stream=1", "flow.drop_prev_motion=0.5",
        ],
    )  # fmt: skip
    return load_checkpoint(run_experiment(cfg, tree, TINY_MMDIT) / "checkpoints" / "last.ckpt")


@pytest.mark.slow
def test_generation_follows_the_emotion_asked_for(emotion_mmdit, strong_emotion_shards, emotion_checkpoint):
    module, classifier = emotion_mmdit, load_classifier(emotion_checkpoint)
    stats = MotionStats.from_arrays(module.motion_mean.numpy(), module.motion_std.numpy())
    urls = sorted(str(path) for path in strong_emotion_shards.glob("val-*.tar"))
    data = module.cfg.data
    batch = next(iter(ValidationDataset(urls, stats, data.window_frames, data.prev_frames, 64, 64)))
    labelled = batch["emotion"] != NULL_EMOTION
    cond = {key: batch[key][labelled] for key in ("audio", "identity", "emotion", "prev_motion")}
    own = cond["emotion"]
    # As from a reference photo with a neutral face: the clip's own previous motion shows its emotion, which
    # would tell the model the answer whatever label it is given.
    offsets = torch.stack([torch.from_numpy(emotion_offset(int(e), SIGNAL)) for e in own])
    cond["prev_motion"] = cond["prev_motion"] - offsets[:, None] / module.motion_std
    wrong = (own + 1) % len(EMOTIONS)

    def predicted(emotion: torch.Tensor) -> list[int]:
        with torch.no_grad():
            motion = module.sample({**cond, "emotion": emotion}, data.window_frames, seed=0)
        return classifier.predict(module.denormalize(motion))

    truth = module.denormalize(batch["motion"][labelled])
    assert emotion_accuracy(own, classifier.predict(truth))["accuracy"] >= 0.8
    right, asked_wrong = predicted(own), predicted(wrong)
    accuracy = emotion_accuracy(own, right)["accuracy"]
    assert len(own) >= 8 and accuracy >= 0.6  # chance: 1/8
    # Asked for the next emotion, the same windows lose their own and show the one asked for.
    assert emotion_accuracy(own, asked_wrong)["accuracy"] <= accuracy - 0.5
    assert emotion_accuracy(wrong, asked_wrong)["accuracy"] >= 0.7
