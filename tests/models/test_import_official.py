"""Importing the released net-200.pth: names, shapes, the embedder swap, statistics, null audio and time grid."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from moda_train.core.checkpoint import load_module
from moda_train.core.stats import MotionStats
from moda_train.import_official import convert_state_dict, import_official, infer_model_config, main, our_name
from moda_train.lit.mmdit_module import MoDALightningModule
from moda_train.models.config import ModelConfig

from .released_moda import (
    reference_sample,
    reference_velocity,
    released_shapes,
    write_released_net,
    write_released_stats,
)

# A reduced width of the released layout (all 408 tensors, 3 + 6 + 12 blocks): hidden 64, 4 heads of 16, and the
# audio input of the logmel backend (4 x 80) so the generation test can run it.
SMALL = dict(hidden=64, head_dim=16, audio_dim=320)
HEADS = 4
T = 80


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    root = tmp_path_factory.mktemp("released")
    weights = write_released_net(root / "net-200.pth", seed=0, **SMALL)
    stats = write_released_stats(root / "mean.pt", seed=1)
    return root, weights, stats


@pytest.fixture(scope="module")
def imported(released):
    root, _, _ = released
    out = import_official(
        root / "net-200.pth", root / "mean.pt", root / "out" / "moda_official.ckpt", log=lambda _: None
    )
    return load_module(MoDALightningModule, out, "mmdit")


def _inputs(audio_dim: int, batch: int = 2, seed: int = 3) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return dict(
        x_t=torch.randn(batch, T, 70, generator=g),
        t=torch.rand(batch, generator=g),
        audio=torch.randn(batch, T, audio_dim, generator=g),
        identity=torch.randn(batch, 63, generator=g),
        emotion=torch.tensor([4, 8][:batch]),
        prev_motion=torch.randn(batch, 1, 70, generator=g),
    )


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def test_every_released_moda_b_tensor_maps_once_onto_moda_b():
    """The real MoDA-B layout (408 tensors from the released list), on the meta device: nothing is allocated."""
    shapes = released_shapes()
    state = {name: torch.empty(shape, device="meta") for name, shape in shapes.items()}
    sizes = infer_model_config(state)
    assert ModelConfig(**sizes) == ModelConfig(audio_dim=9216)  # the defaults are MoDA-B
    converted = convert_state_dict(state, ModelConfig(**sizes))
    assert len(converted) == len(shapes) == 408
    assert sum(v.numel() for v in converted.values()) == 372_983_878
    assert len({our_name(name) for name in shapes}) == 408


def test_imported_velocity_equals_the_released_evaluation(released, imported):
    _, weights, _ = released
    inputs = _inputs(SMALL["audio_dim"])
    ours = imported.ema(**inputs)
    reference = reference_velocity(weights, **inputs, heads=HEADS)
    assert _relative(ours, reference) < 1e-5
    # the check can fail: without the swap of the embedder's halves the velocity is far off
    unswapped = {**imported.ema.state_dict()}
    w = unswapped["motion_embed.fc1.weight"]
    unswapped["motion_embed.fc1.weight"] = torch.cat([w[:, 70:], w[:, :70]], dim=1)
    model = type(imported.ema)(imported.ema.config)
    model.load_state_dict(unswapped)
    assert _relative(model(**inputs), reference) > 0.05


def test_null_audio_is_zeros_and_a_learned_null_is_used_where_audio_is_dropped(released, imported):
    _, weights, _ = released
    inputs = _inputs(SMALL["audio_dim"])
    null = torch.tensor([True, True])
    zeros = {**inputs, "audio": torch.zeros_like(inputs["audio"])}
    expected = reference_velocity(weights, **zeros, heads=HEADS)
    assert _relative(imported.ema(**inputs, audio_null=null), expected) < 1e-5

    config = copy.deepcopy(imported.hparams["config"])
    config["model"]["null_audio"] = "learned"
    learned = MoDALightningModule(config)
    state = imported.state_dict()
    feature = torch.randn(SMALL["audio_dim"])  # the release draws its null feature at random, like this
    state["model.null_audio"] = state["ema.null_audio"] = feature
    learned.load_state_dict(state)
    with_feature = {**inputs, "audio": feature.expand_as(inputs["audio"])}
    expected = reference_velocity(weights, **with_feature, heads=HEADS)
    assert _relative(learned.ema(**inputs, audio_null=null), expected) < 1e-5


def test_statistics_keep_the_released_convention(released, imported):
    root, _, stats = released
    record = json.loads((root / "out" / "moda_official.stats.json").read_text())
    assert (record["std_convention"], record["std_epsilon"]) == ("add", 1e-5)
    released_motion = {"name": "liveportrait", "convention": "liveportrait-crop,native-expression"}
    assert (record["audio_backend"], record["motion_backend"]) == ("hubert", released_motion)
    loaded = MotionStats.load(root / "out" / "moda_official.stats.json")
    assert (loaded.motion_backend, loaded.motion_convention) == ("liveportrait", released_motion["convention"])
    assert imported.cfg.data.motion_convention == released_motion["convention"]
    assert imported.cfg.flow.rescale_reference
    divisor = stats["std"].reshape(-1) + 1e-5
    torch.testing.assert_close(imported.motion_std, divisor)
    torch.testing.assert_close(
        torch.as_tensor(MotionStats.load(root / "out" / "moda_official.stats.json").std), divisor
    )
    # the framework's own convention would have floored these dimensions at 1e-4 instead
    assert (divisor < 1e-4).sum() == 6


def test_guided_window_equals_the_released_sampler(released, imported):
    """Released grid, guidance 1.2, statistics convention, null audio: one window in real units."""
    _, weights, stats = released
    inputs = _inputs(SMALL["audio_dim"], batch=1)
    prev_real = torch.randn(1, 1, 70)
    noise = torch.randn(1, T, 70, generator=torch.Generator().manual_seed(5))
    cond = {
        "audio": inputs["audio"],
        "identity": inputs["identity"],
        "emotion": inputs["emotion"],
        "prev_motion": imported.normalize(prev_real),
    }
    assert imported.cfg.flow.sample_grid == "released"
    ours = imported.denormalize(imported.sample(cond, T, noise=noise))
    null_audio = torch.zeros(SMALL["audio_dim"])
    args = (weights, stats, noise, inputs["audio"], inputs["identity"], inputs["emotion"], prev_real, null_audio)
    reference = reference_sample(*args, heads=HEADS)
    assert _relative(ours, reference) < 1e-5
    # and the grid matters: this framework's uniform grid gives another window
    imported.cfg.flow.sample_grid = "uniform"
    try:
        uniform = imported.denormalize(imported.sample(cond, T, noise=noise))
    finally:
        imported.cfg.flow.sample_grid = "released"
    assert _relative(uniform, reference) > 1e-3


def test_unknown_missing_and_misshapen_tensors_are_reported(released):
    _, weights, _ = released
    config = ModelConfig(**infer_model_config(weights))
    extra = {**weights, "null_audio_feat": torch.zeros(1, 1, 1, 1, 320)}
    with pytest.raises(ValueError, match="no place in the model: null_audio_feat"):
        convert_state_dict(extra, config)
    missing = {k: v for k, v in weights.items() if k != "blocks.3.linear2.bias"}
    with pytest.raises(ValueError, match=r"does not provide: single_stream\.3\.linear2\.bias"):
        convert_state_dict(missing, config)
    misshapen = {**weights, "final_layer.linear.bias": torch.zeros(71)}
    with pytest.raises(ValueError, match=r"shapes differ: final_layer\.linear\.bias \(71,\)"):
        convert_state_dict(misshapen, config)


def test_cli_writes_a_checkpoint_and_reports_bad_input(released, tmp_path, capsys):
    root, _, _ = released
    out = tmp_path / "official.ckpt"
    assert main(["--weights", str(root / "net-200.pth"), "--stats", str(root / "mean.pt"), "--out", str(out)]) == 0
    assert "imported 408 released tensors" in capsys.readouterr().out
    assert out.is_file() and (tmp_path / "official.stats.json").is_file()
    assert (
        main(["--weights", str(tmp_path / "none.pth"), "--stats", str(root / "mean.pt"), "--out", str(out)]) == 1
    )
    assert "released weights not found" in capsys.readouterr().err
    torch.save({"mean": torch.zeros(3)}, tmp_path / "bad.pt")
    assert (
        main(["--weights", str(root / "net-200.pth"), "--stats", str(tmp_path / "bad.pt"), "--out", str(out)]) == 1
    )
    assert "expected a dict with `mean` and `std`" in capsys.readouterr().err


@pytest.mark.slow
def test_fine_tune_from_an_imported_checkpoint(released, tmp_path):
    """train.init_from= an imported checkpoint, normalising with the statistics written beside it."""
    from moda_train.core.config_loader import CONFIGS_ROOT
    from moda_train.data.synthetic import write_synthetic_shards
    from moda_train.experiment import load_experiment
    from moda_train.launch.run import run_experiment

    root, weights, _ = released
    ckpt = import_official(root / "net-200.pth", root / "mean.pt", tmp_path / "official.ckpt", log=lambda _: None)
    shards = write_synthetic_shards(tmp_path / "shards", num_clips=2, frames=100, val_clips=0)
    # the synthetic shards carry logmel features (320 wide, as this reduced layout takes): relabel the statistics
    stats_path = tmp_path / "official.stats.json"
    stats_path.write_text(stats_path.read_text().replace('"hubert"', '"logmel"'))
    sizes = [f"model.{key}={value}" for key, value in infer_model_config(weights).items()]
    experiment = CONFIGS_ROOT / "experiments" / "mmdit_tiny_cpu.yaml"
    cfg, tree = load_experiment(
        experiment,
        [
            f"data.train_shards={shards}/train-*.tar", "data.val_shards=", f"train.out_dir={tmp_path}",
            f"data.stats_path={stats_path}", "train.run_name=ft", "data.num_workers=0",
            "train.global_batch_size=2", "train.micro_batch_size=2", "train.max_steps=1", "optim.lr=1e-6",
            f"train.init_from={ckpt}", *sizes,
        ],
    )  # fmt: skip
    state = torch.load(run_experiment(cfg, tree, experiment) / "checkpoints" / "last.ckpt", weights_only=False)
    start = torch.load(ckpt, weights_only=False)["state_dict"]
    assert state["global_step"] == 1
    for key in ("model.four_stream.0.streams.1.qkv.weight", "ema.final.linear.weight", "motion_std"):
        torch.testing.assert_close(state["state_dict"][key], start[key], atol=1e-4, rtol=0)
