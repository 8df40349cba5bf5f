"""A tiny ALSE trained through the CLI learns sync; its scorer finds known offsets; the plug-in loss gates.

The expert is trained once per session (conftest `trained_run`, about 150 steps) on synthetic shards whose lip
dimensions follow the audio energy; every test here reads its checkpoint. Held-out clips come from a generator
seed the shards never used.
"""

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from moda_train.alse_score import ALSEScorer
from moda_train.core.motion_layout import LIP_DIMS, group_indices
from moda_train.core.stats import MotionStats
from moda_train.flow.config import FlowConfig
from moda_train.flow.loss import flow_loss
from moda_train.lit.alse_loss import ALSELoss
from moda_train.lit.alse_module import load_expert
from moda_train.models.alse import sync_accuracy
from tests.tiny_moda import tiny_model

pytestmark = pytest.mark.slow
WINDOW = 80  # the MMDiT's window length


def _scalars(run_dir) -> dict[str, list[float]]:
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    return {tag: [e.value for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_cli_run_writes_checkpoint_config_and_metrics(trained_run, checkpoint):
    run_dir, _ = trained_run
    assert checkpoint.is_file() and (run_dir / "config.yaml").is_file()
    scalars = _scalars(run_dir)
    for tag in ("val/sync_acc", "val/sync_conf", "val/sync_dist", "val/offset_zero", "val/loss", "train/loss"):
        assert tag in scalars, f"{tag} not logged"
    assert scalars["train/loss"][-1] < 0.5 * scalars["train/loss"][0]
    assert scalars["val/sync_acc"][-1] > 0.5  # chance is 1/29
    assert scalars["val/offset_zero"][-1] == 1.0  # ground-truth validation windows are in sync
    # The checkpoint records what made its shards (their stats.json), and loading gives it back.
    recorded = {"motion_backend": "synthetic", "audio_backend": "logmel"}
    assert torch.load(checkpoint, map_location="cpu", weights_only=False)["shard_backends"] == recorded
    assert load_expert(checkpoint).shard_backends == recorded


def _normalised_batch(clips, module, audio_from=None):
    audio_from = audio_from or list(range(len(clips)))
    motion = torch.stack([torch.from_numpy(c["motion"][:WINDOW]) for c in clips])
    audio = torch.stack([torch.from_numpy(clips[i]["audio"][:WINDOW]) for i in audio_from])
    return (motion - module.motion_mean) / module.motion_std, audio


def test_held_out_sync_accuracy_is_well_above_chance(checkpoint, held_out):
    module = load_expert(checkpoint)
    cfg = module.cfg.alse
    motion = torch.stack([torch.from_numpy(c["motion"]) for c in held_out])
    audio = torch.stack([torch.from_numpy(c["audio"]) for c in held_out])
    motion = (motion - module.motion_mean) / module.motion_std
    with torch.no_grad():
        accuracy = sync_accuracy(module.expert.embed_lips(motion), module.expert.embed_audio(audio), cfg)
    chance = 1 / (1 + 2 * (cfg.max_shift - cfg.min_shift + 1))
    assert accuracy > 0.6, f"held-out sync accuracy {accuracy:.3f} (chance {chance:.3f})"


@pytest.mark.parametrize("delay", [0, 4, -6, 11])
def test_scorer_finds_the_shift_of_held_out_clips(checkpoint, held_out, delay):
    """Audio delayed by `delay` frames: motion frame j is paired with the audio of frame j - delay, so the mouth
    leads the audio and the offset (positive = mouth lags) is -delay."""
    scorer = ALSEScorer.from_checkpoint(checkpoint)
    for clip in held_out:
        motion, audio = clip["motion"], clip["audio"]
        if delay > 0:
            motion, audio = motion[delay:], audio[:-delay]
        elif delay < 0:
            motion, audio = motion[:delay], audio[-delay:]
        result = scorer.score_sync(motion, audio)
        assert result["offset"] == -delay
        assert result["confidence"] > 0.3 and len(result["mdist"]) == 31


def test_scorer_confidence_drops_for_foreign_audio(checkpoint, held_out):
    scorer = ALSEScorer.from_checkpoint(checkpoint)
    own = scorer.score_sync(held_out[0]["motion"], held_out[0]["audio"])
    foreign = scorer.score_sync(held_out[0]["motion"], held_out[1]["audio"])
    assert foreign["confidence"] < 0.5 * own["confidence"]
    assert foreign["min_dist"] > own["min_dist"]


def test_scorer_takes_normalised_motion_and_layered_audio(checkpoint, held_out):
    scorer = ALSEScorer.from_checkpoint(checkpoint)
    module = scorer.module
    raw = scorer.score_sync(held_out[0]["motion"], held_out[0]["audio"])
    normalised = (torch.from_numpy(held_out[0]["motion"]) - module.motion_mean) / module.motion_std
    layered = held_out[0]["audio"].reshape(-1, 4, 80)
    assert scorer.score_sync(normalised, layered, normalized=True)["mdist"] == pytest.approx(raw["mdist"])
    with pytest.raises(ValueError, match=r"one clip: motion \[T, 70\]"):
        scorer.score_sync(held_out[0]["motion"][None], held_out[0]["audio"])


def test_gate_lets_through_exactly_the_in_sync_samples(checkpoint, held_out):
    """Samples 0..4 keep their own audio, 5..7 get another clip's: the gate passes 5 of 8, and only those samples'
    lip dimensions receive a gradient."""
    loss_fn = ALSELoss.from_checkpoint(checkpoint, weight=1.0)
    x0, audio = _normalised_batch(held_out, load_expert(checkpoint), audio_from=[0, 1, 2, 3, 4, 6, 7, 5])
    x0_hat = (x0 + 0.3 * torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))).requires_grad_()
    out = loss_fn(x0_hat, x0, audio, torch.full((8,), 0.5))
    assert out["gate_fraction"].item() == pytest.approx(5 / 8)
    out["loss"].backward()
    per_sample = x0_hat.grad.abs().sum(dim=(1, 2))
    assert (per_sample[:5] > 0).all() and (per_sample[5:] == 0).all()
    other_dims = [d for d in range(70) if d not in LIP_DIMS]
    assert x0_hat.grad[..., other_dims].abs().max() == 0


def test_gate_threshold_extremes(checkpoint, held_out):
    x0, audio = _normalised_batch(held_out, load_expert(checkpoint))
    t = torch.zeros(8)
    assert ALSELoss.from_checkpoint(checkpoint, 1.0, tau=0.0)(x0, x0, audio, t)["gate_fraction"] == 1.0
    closed = ALSELoss.from_checkpoint(checkpoint, 1.0, tau=1.0)(x0, x0, audio, t)
    assert closed["gate_fraction"] == 0.0 and closed["loss"] == 0.0


def test_loss_prefers_true_lips_and_scales_with_weight_and_noise(checkpoint, held_out):
    x0, audio = _normalised_batch(held_out, load_expert(checkpoint))
    late_lips = torch.roll(x0, shifts=5, dims=1)  # the same lips, 5 frames late
    t = torch.zeros(8)
    loss_fn = ALSELoss.from_checkpoint(checkpoint, weight=1.0)
    assert loss_fn(x0, x0, audio, t)["sync"] < 0.5 * loss_fn(late_lips, x0, audio, t)["sync"]
    base = loss_fn(late_lips, x0, audio, t)["loss"]
    assert ALSELoss.from_checkpoint(checkpoint, weight=0.1)(late_lips, x0, audio, t)["loss"] == pytest.approx(
        0.1 * base
    )
    noisy = ALSELoss.from_checkpoint(checkpoint, weight=1.0, noise_power=1.0)
    assert noisy(late_lips, x0, audio, torch.full((8,), 0.5))["loss"] == pytest.approx(0.5 * base)
    assert noisy(late_lips, x0, audio, torch.ones(8))["loss"] == 0.0


def test_loss_converts_between_normalisations(checkpoint, held_out):
    module = load_expert(checkpoint)
    x0, audio = _normalised_batch(held_out, module)
    raw = x0 * module.motion_std + module.motion_mean
    other = MotionStats.from_arrays(module.motion_mean.numpy() + 1.0, module.motion_std.numpy() * 2.0)
    converted = ALSELoss.from_checkpoint(checkpoint, 1.0, motion_stats=other)
    same = ALSELoss.from_checkpoint(checkpoint, 1.0)
    t = torch.zeros(8)
    assert converted(other.normalize(raw), other.normalize(raw), audio, t)["sync"] == pytest.approx(
        same(x0, x0, audio, t)["sync"].item(), rel=1e-4
    )


def test_loss_backpropagates_into_the_mmdit_through_flow_loss(checkpoint, held_out):
    """The exact call MMDiT training makes: flow_loss's x0_hat and t into ALSELoss; the MMDiT gets gradients."""
    model = tiny_model(
        0, perturb=False, num_heads=2, depth_single_stream=1, audio_dim=320, motion_dim=70, identity_dim=63
    )
    x0, audio = _normalised_batch(held_out[:2], load_expert(checkpoint))
    cond = {
        "audio": audio,
        "identity": torch.zeros(2, 63),
        "emotion": torch.zeros(2, dtype=torch.long),
        "prev_motion": x0[:, :1],
    }
    terms = flow_loss(model, x0, cond, FlowConfig(drop_audio=0.0), group_indices())
    alse = ALSELoss.from_checkpoint(checkpoint, weight=0.5, tau=0.0)(
        terms["x0_hat"], x0, cond["audio"], terms["t"]
    )
    alse["loss"].backward()
    assert alse["loss"] > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_loading_names_what_is_wrong(tmp_path, checkpoint):
    with pytest.raises(FileNotFoundError, match="ALSE checkpoint not found"):
        load_expert(tmp_path / "missing.ckpt")
    with pytest.raises(ValueError, match="sharded DeepSpeed folder.*moda_train.consolidate"):
        load_expert(tmp_path)
    foreign = torch.load(checkpoint, weights_only=False)
    foreign["hyper_parameters"]["config"]["task"] = "mmdit"
    torch.save(foreign, tmp_path / "mmdit.ckpt")
    with pytest.raises(ValueError, match="not an ALSE checkpoint"):
        load_expert(tmp_path / "mmdit.ckpt")
    with pytest.raises(ValueError, match="tau is a cosine"):
        ALSELoss.from_checkpoint(checkpoint, 1.0, tau=1.5)


def test_numpy_inputs_and_clip_length_mismatch(checkpoint, held_out):
    scorer = ALSEScorer.from_checkpoint(checkpoint)
    with pytest.raises(ValueError, match="differ in"):
        scorer.score_sync(held_out[0]["motion"], np.asarray(held_out[0]["audio"][:-3]))
