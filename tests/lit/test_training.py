"""Training runs end to end on CPU: logs TensorBoard can read, checkpoints that resume exactly, EMA, schedule."""

import math

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from moda_train.core.config_loader import CONFIGS_ROOT
from moda_train.data.synthetic import write_synthetic_shards
from moda_train.experiment import load_experiment
from moda_train.launch.run import run_experiment
from moda_train.lit.ema import EMAShadow, make_ema
from moda_train.lit.mmdit_module import MoDALightningModule
from moda_train.lit.optim import warmup_cosine

TINY = CONFIGS_ROOT / "experiments" / "mmdit_tiny_cpu.yaml"


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return write_synthetic_shards(tmp_path_factory.mktemp("shards"), num_clips=8, frames=100)


def _train(shards, out_dir, *overrides):
    cfg, tree = load_experiment(
        TINY,
        [
            f"data.train_shards={shards}/train-*.tar", f"data.val_shards={shards}/val-*.tar",
            f"data.stats_path={shards}/stats.json", f"train.out_dir={out_dir}", "train.run_name=run",
            "data.num_workers=0", "train.log_every_n_steps=1", "data.val_windows=4", "model.depth_single_stream=1",
            *overrides,
        ],
    )  # fmt: skip
    return run_experiment(cfg, tree, TINY)


def _weights(path):
    return torch.load(path, map_location="cpu", weights_only=False)["state_dict"]


@pytest.mark.slow
def test_train_logs_checkpoints_and_config(shards, tmp_path):
    run_dir = _train(
        shards, tmp_path, "train.max_steps=4", "train.val_every_n_steps=2", "train.checkpoint_every_n_steps=2"
    )
    assert (run_dir / "config.yaml").is_file()
    checkpoints = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert {"last.ckpt", "step-0000002.ckpt", "step-0000004.ckpt", "best.ckpt"} <= set(checkpoints)
    events = EventAccumulator(str(run_dir / "tensorboard")).Reload()
    tags = set(events.Tags()["scalars"])
    for tag in ("train/loss", "train/velocity/lip", "train/velocity/pose", "val/loss", "val/sample_lip_mae",
                "lr-AdamW", "perf/windows_per_sec_per_device", "train/grad_norm"):  # fmt: skip
        assert tag in tags, f"{tag} not logged; have {sorted(tags)}"
    assert len(events.Scalars("train/loss")) == 4
    assert "val/motion_curves" in events.Tags()["images"]


@pytest.mark.slow
def test_resume_continues_exactly(shards, tmp_path):
    """4 steps + resume to 8 gives the same weights (model, EMA, optimizer path) as 8 uninterrupted steps."""
    common = ("train.checkpoint_every_n_steps=4", "train.val_every_n_steps=100", "data.val_shards=")
    straight = _train(shards, tmp_path / "a", "train.max_steps=8", *common)
    _train(shards, tmp_path / "b", "train.max_steps=4", *common)
    resumed = _train(shards, tmp_path / "b", "train.max_steps=8", *common)  # resume=auto picks up `last`
    a, b = _weights(straight / "checkpoints" / "last.ckpt"), _weights(resumed / "checkpoints" / "last.ckpt")
    assert torch.load(resumed / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 8
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=1e-6, msg=name)
    # and the run did learn something different from its start
    first = _weights(tmp_path / "b" / "run" / "checkpoints" / "step-0000004.ckpt")
    assert any(not torch.equal(first[n], b[n]) for n in b if n.startswith("model."))


@pytest.mark.slow
def test_compiled_training_trains_and_resumes(shards, tmp_path):
    """model.compile: 2 steps + resume to 4 gives the 4-step run's weights, under the eager model's names."""
    common = ("model.compile=true", "train.checkpoint_every_n_steps=2", "train.val_every_n_steps=100",
              "data.val_shards=")  # fmt: skip
    straight = _train(shards, tmp_path / "a", "train.max_steps=4", *common)
    _train(shards, tmp_path / "b", "train.max_steps=2", *common)
    resumed = _train(shards, tmp_path / "b", "train.max_steps=4", *common)
    a, b = _weights(straight / "checkpoints" / "last.ckpt"), _weights(resumed / "checkpoints" / "last.ckpt")
    first = _weights(resumed / "checkpoints" / "step-0000002.ckpt")
    config = torch.load(straight / "checkpoints" / "last.ckpt", weights_only=False)["hyper_parameters"]["config"]
    config["model"]["compile"] = False
    assert a.keys() == MoDALightningModule(config).state_dict().keys()  # an eager module loads it as is
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=1e-6, msg=name)
    assert any(not torch.equal(first[n], b[n]) for n in b if n.startswith("model."))


@pytest.mark.slow
def test_checkpoint_rebuilds_the_model_with_its_statistics(shards, tmp_path):
    run_dir = _train(shards, tmp_path, "train.max_steps=2", "data.val_shards=")
    module = MoDALightningModule.load_from_checkpoint(run_dir / "checkpoints" / "last.ckpt", map_location="cpu")
    stats = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]["motion_std"]
    torch.testing.assert_close(module.motion_std, stats)
    assert module.cfg.model.hidden_size == 64
    cond = {"audio": torch.randn(1, 80, 320), "identity": torch.randn(1, 63), "emotion": torch.tensor([8]),
            "prev_motion": torch.zeros(1, 1, 70)}  # fmt: skip
    torch.testing.assert_close(module.sample(cond, 80, seed=1), module.sample(cond, 80, seed=1))


def test_ema_update():
    model = torch.nn.Linear(3, 3)
    ema = make_ema(model)
    assert not any(p.requires_grad for p in ema.parameters()) and not ema.training
    shadow = EMAShadow(ema, decay=0.9)
    shadow.attach(model, rank=0, world_size=1)
    assert shadow.layout == "alias"  # an fp32 module is its own accumulator
    with torch.no_grad():
        model.weight.add_(1.0)
    before = ema.weight.clone()
    shadow.update(model)
    torch.testing.assert_close(ema.weight, 0.9 * before + 0.1 * model.weight)


def test_ema_of_a_bf16_cast_module_accumulates_in_fp32():
    # What DeepSpeed does under bf16-mixed: every parameter, the EMA copy's too, becomes bf16 after setup.
    model = torch.nn.Linear(64, 64)
    ema = make_ema(model)
    shadow = EMAShadow(ema, decay=0.9999)
    shadow.snapshot()
    start = ema.weight.detach().clone()
    for module in (model, ema):
        for p in module.parameters():
            p.data = p.data.to(torch.bfloat16)
    shadow.attach(model, rank=0, world_size=1)
    assert shadow.layout == "full"
    with torch.no_grad():
        model.weight.add_(0.01)
    for _ in range(100):
        shadow.update(model)
    expected = start + (1 - 0.9999**100) * (model.weight.float() - start)
    torch.testing.assert_close(shadow.tensors["weight"], expected, rtol=0, atol=1e-6)
    moved = shadow.tensors["weight"] - start  # about 1e-4: below bf16's resolution near the weights
    assert moved.abs().min() > 5e-5
    saved = shadow.state_dict()
    assert saved["layout"] == "full" and saved["tensors"]["weight"].dtype == torch.float32
    again = EMAShadow(ema, decay=0.9999)
    again.load_state_dict(saved, rank=0, world_size=1)
    again.attach(model, rank=0, world_size=1)
    assert torch.equal(again.tensors["weight"], shadow.tensors["weight"])  # restored bit for bit


def test_warmup_cosine_schedule():
    assert warmup_cosine(0, 10, 100, 0.1) == pytest.approx(0.1)
    assert warmup_cosine(9, 10, 100, 0.1) == pytest.approx(1.0)
    assert warmup_cosine(55, 10, 100, 0.1) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert warmup_cosine(100, 10, 100, 0.1) == pytest.approx(0.1)
    assert warmup_cosine(500, 10, 100, 0.1) == pytest.approx(0.1)


@pytest.mark.slow
def test_training_with_the_alse_loss_logs_it(shards, tmp_path):
    alse_experiment = CONFIGS_ROOT / "experiments" / "alse_tiny_cpu.yaml"
    cfg, tree = load_experiment(
        alse_experiment,
        [
            f"data.train_shards={shards}/train-*.tar", "data.val_shards=", f"data.stats_path={shards}/stats.json",
            f"train.out_dir={tmp_path}", "train.run_name=alse", "train.max_steps=3", "data.num_workers=0",
        ],
    )  # fmt: skip
    expert = run_experiment(cfg, tree, alse_experiment) / "checkpoints" / "last.ckpt"
    run_dir = _train(
        shards, tmp_path / "mmdit", "train.max_steps=3", "data.val_shards=", f"sync.checkpoint={expert}",
        "sync.tau=0.0",  # let every sample through: the 3-step expert is not yet confident
    )  # fmt: skip
    events = EventAccumulator(str(run_dir / "tensorboard")).Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/alse/sync", "train/alse/gate_fraction"} <= tags
    assert all(e.value == 1.0 for e in events.Scalars("train/alse/gate_fraction"))


@pytest.mark.slow
def test_mmdit_trains_and_samples_in_the_vae_latent_space(shards, tmp_path):
    vae_experiment = CONFIGS_ROOT / "experiments" / "vae_tiny_cpu.yaml"
    cfg, tree = load_experiment(
        vae_experiment,
        [
            f"data.train_shards={shards}/train-*.tar", f"data.val_shards={shards}/val-*.tar",
            f"data.stats_path={shards}/stats.json", f"train.out_dir={tmp_path}", "train.run_name=vae",
            "train.max_steps=2", "train.val_every_n_steps=1", "data.num_workers=0",
        ],
    )  # fmt: skip
    vae = run_experiment(cfg, tree, vae_experiment) / "checkpoints" / "last.ckpt"
    run_dir = _train(
        shards, tmp_path / "mmdit", "train.max_steps=2", "data.val_shards=", "model.motion_space=vae",
        f"model.vae_checkpoint={vae}",
    )  # fmt: skip
    module = MoDALightningModule.load_from_checkpoint(run_dir / "checkpoints" / "last.ckpt", map_location="cpu")
    assert module.model.config.motion_dim == module.space.latent_dim != 70
    cond = {"audio": torch.randn(1, 80, 320), "identity": torch.randn(1, 63), "emotion": torch.tensor([8]),
            "prev_motion": torch.zeros(1, 1, 70)}  # fmt: skip
    motion = module.denormalize(module.sample(cond, 80, seed=0))
    assert motion.shape == (1, 80, 70) and torch.isfinite(motion).all()


@pytest.mark.slow
def test_last_checkpoint_is_the_final_step_off_the_interval(shards, tmp_path):
    run_dir = _train(shards, tmp_path, "train.max_steps=3", "train.checkpoint_every_n_steps=2", "data.val_shards=")
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert last["global_step"] == 3
