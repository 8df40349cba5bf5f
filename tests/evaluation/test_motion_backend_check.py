"""The judges of re-extracted motion (ALSE for motion_sync, the emotion classifier) must have been trained on
motion from the extractor evaluation uses (`motion.extractor`): a mismatch is refused, naming both; a checkpoint
that does not record its shards' motion backend is scored with a warning in metrics.json."""

import pytest
import torch
from omegaconf import OmegaConf

from evaluation.config import EvalConfig
from evaluation.run import _add_weights_warnings, check_metrics, main
from moda_train.core.config_loader import CONFIGS_ROOT, load_config
from moda_train.experiment import load_experiment
from moda_train.lit.alse_module import ALSELightningModule
from moda_train.lit.emotion_module import EmotionLightningModule

JUDGES = {
    "motion_sync": ("alse_tiny_cpu.yaml", ALSELightningModule, "motion_sync.checkpoint", "the ALSE checkpoint"),
    "emotion": ("emotion_tiny_cpu.yaml", EmotionLightningModule, "emotion.checkpoint", "the emotion classifier"),
}


def _checkpoint(path, group: str, motion_backend: str | None):
    # An untrained judge saved the way Lightning saves one; `shard_backends` as training records it (None: an
    # older checkpoint without the record).
    recipe, cls, _, _ = JUDGES[group]
    _, tree = load_experiment(CONFIGS_ROOT / "experiments" / recipe)
    config = OmegaConf.to_container(tree)
    checkpoint = {"hyper_parameters": {"config": config}, "state_dict": cls(config).state_dict()}
    if motion_backend is not None:
        checkpoint["shard_backends"] = {"motion_backend": motion_backend, "audio_backend": "logmel"}
    torch.save(checkpoint, path)
    return path


def _config(tmp_path, group: str, checkpoint, extractor: str = "landmarks") -> EvalConfig:
    option = JUDGES[group][2]
    overrides = [f"split={tmp_path / 'split.csv'}", f"generated_dir={tmp_path}", f"metrics=[{group}]"]
    cfg, _ = load_config(
        None, [*overrides, f"{option}={checkpoint}", f"motion.extractor={extractor}"], schema=EvalConfig
    )
    return cfg


@pytest.mark.parametrize("group", list(JUDGES))
def test_mismatched_motion_backend_is_refused_naming_both(tmp_path, group):
    ckpt = _checkpoint(tmp_path / "judge.ckpt", group, "liveportrait")
    with pytest.raises(ValueError) as err:
        check_metrics(_config(tmp_path, group, ckpt))
    message = str(err.value)
    assert message.startswith(f"{JUDGES[group][3]}") and str(ckpt) in message and "\n" not in message
    assert "trained on 'liveportrait' motion" in message and "from the 'landmarks' extractor" in message


@pytest.mark.parametrize("group", list(JUDGES))
def test_matching_backend_passes_and_an_unrecorded_one_warns(tmp_path, group):
    name = "alse" if group == "motion_sync" else "emotion classifier"
    status, weights = check_metrics(_config(tmp_path, group, _checkpoint(tmp_path / "a.ckpt", group, "landmarks")))
    assert status[group] == "ok" and weights[name]["motion_backend"] == "landmarks"
    assert "warning" not in weights[name]

    status, weights = check_metrics(_config(tmp_path, group, _checkpoint(tmp_path / "old.ckpt", group, None)))
    assert status[group] == "ok" and weights[name]["motion_backend"] is None
    assert "does not record the motion backend it was trained on" in weights[name]["warning"]
    assert "cannot check that it matches 'landmarks'" in weights[name]["warning"]


def test_the_warning_reaches_every_metric_of_its_group():
    metrics = {"motion_sync_c": {"value": 0.5}, "motion_sync_d": {"value": 1.0, "warning": "few windows"}}
    metrics["fid"] = {"value": 3.0}
    _add_weights_warnings(metrics, {"alse": {"warning": "unchecked backend"}, "inception": {"sha256": "x"}})
    assert metrics["motion_sync_c"]["warning"] == "unchecked backend"
    assert metrics["motion_sync_d"]["warning"] == "few windows; unchecked backend"
    assert "warning" not in metrics["fid"]


def test_cli_exits_with_the_one_line_error(tmp_path, capsys):
    ckpt = _checkpoint(tmp_path / "judge.ckpt", "motion_sync", "liveportrait")
    (tmp_path / "a.mp4").write_bytes(b"")
    (tmp_path / "split.csv").write_text("key,video\na,a.mp4\n")
    config = tmp_path / "eval.yaml"
    config.write_text(f"split: {tmp_path / 'split.csv'}\ngenerated_dir: {tmp_path}\nmetrics: [motion_sync]\n")
    code = main([str(config), f"motion_sync.checkpoint={ckpt}", f"out_dir={tmp_path / 'out'}"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: the ALSE checkpoint") and err.count("\n") == 1
