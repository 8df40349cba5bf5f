"""Evaluation during training: a short tiny MMDiT run with `evaluation.every_n_steps` logs the motion-space metrics
of its generated windows to TensorBoard, with the ALSE expert and the emotion classifier configured."""

from __future__ import annotations

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from moda_train.core.config_loader import CONFIGS_ROOT
from moda_train.experiment import load_experiment
from moda_train.launch.run import run_experiment
from moda_train.lit.eval_callback import TrainingEvaluation
from tests.emotion.conftest import shard_overrides

TINY_MMDIT = CONFIGS_ROOT / "experiments" / "mmdit_tiny_cpu.yaml"
TINY_ALSE = CONFIGS_ROOT / "experiments" / "alse_tiny_cpu.yaml"


def _run(path, shards, out_dir, *overrides):
    cfg, tree = load_experiment(
        path, [*shard_overrides(shards), f"train.out_dir={out_dir}", "train.run_name=run", *overrides]
    )
    return run_experiment(cfg, tree, path)


@pytest.mark.slow
def test_short_run_logs_evaluation_metrics(emotion_shards, emotion_checkpoint, tmp_path):
    # An ALSE after a few steps: the test is about the wiring (scores computed and logged), not their quality.
    alse = _run(TINY_ALSE, emotion_shards, tmp_path / "alse", "train.max_steps=2", "data.window_frames=80")
    run_dir = _run(
        TINY_MMDIT, emotion_shards, tmp_path / "mmdit",
        "train.max_steps=4", "train.val_every_n_steps=100", "train.checkpoint_every_n_steps=100",
        "model.depth_single_stream=1", "evaluation.every_n_steps=2", "evaluation.windows=4",
        f"evaluation.alse_checkpoint={alse / 'checkpoints' / 'last.ckpt'}",
        f"evaluation.emotion_checkpoint={emotion_checkpoint}",
    )  # fmt: skip
    events = EventAccumulator(str(run_dir / "tensorboard")).Reload()
    tags = set(events.Tags()["scalars"])
    for name in ("lip_mae", "pose_spread", "pose_spread_gt", "motion_jerk_expression", "motion_jerk_pose_gt",
                 "motion_sync_c", "motion_sync_d_gt", "motion_offset_abs", "emotion_accuracy",
                 "emotion_accuracy_gt"):  # fmt: skip
        assert f"eval/{name}" in tags, f"eval/{name} not logged; have {sorted(tags)}"
    assert [e.step for e in events.Scalars("eval/pose_spread")] == [2, 4]
    # The ground truth's own values do not depend on the model: the same at both evaluations.
    first, second = (e.value for e in events.Scalars("eval/pose_spread_gt"))
    assert first == pytest.approx(second)
    # The classifier recognises the ground-truth windows it judges the generated ones by.
    assert events.Scalars("eval/emotion_accuracy_gt")[0].value >= 0.5


def test_evaluation_needs_validation_shards():
    cfg, _ = load_experiment(
        TINY_MMDIT, ["data.train_shards=x", "data.stats_path=y", "data.val_shards=", "evaluation.every_n_steps=2"]
    )
    with pytest.raises(ValueError, match="evaluation.every_n_steps=2 needs data.val_shards"):
        TrainingEvaluation(cfg.evaluation, cfg.data)


def test_a_judge_of_another_motion_backend_stops_the_run_at_its_start(tmp_path):
    from types import SimpleNamespace

    from moda_train.core.stats import write_stats_file
    from moda_train.data.config import DataConfig
    from moda_train.experiment import TrainingEvalConfig
    from tests.evaluation.test_motion_backend_check import _checkpoint

    write_stats_file(
        tmp_path / "stats.json", {"mean": [0.0] * 70, "std": [1.0] * 70, "motion_backend": "synthetic"}
    )
    data = DataConfig(val_shards=str(tmp_path / "val.tar"), stats_path=str(tmp_path / "stats.json"))
    judge = _checkpoint(tmp_path / "emotion.ckpt", "emotion", "liveportrait")
    callback = TrainingEvaluation(TrainingEvalConfig(every_n_steps=2, emotion_checkpoint=str(judge)), data)
    with pytest.raises(
        ValueError, match="trained on 'liveportrait' motion, but .* from the 'synthetic' extractor"
    ):
        callback.on_fit_start(SimpleNamespace(is_global_zero=True), SimpleNamespace(device="cpu"))
