"""The VAE LightningModule through the real CLI: a run end to end, real-unit validation metrics, latent
statistics, and a checkpoint that rebuilds the same module."""

import lightning as L
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from moda_train.core.motion_layout import LIP_DIMS, group_indices
from moda_train.core.stats import MotionStats
from moda_train.data.config import DataConfig
from moda_train.data.datamodule import MotionDataModule
from moda_train.experiment import VAEExperiment
from moda_train.lit.vae_module import MotionVAELightningModule
from moda_train.models.latent_space import LatentSpace

from .vae_helpers import TRAIN_STEPS, run_train

pytestmark = pytest.mark.slow


def _scalars(run_dir) -> dict[str, list[float]]:
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    return {tag: [e.value for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_cli_run_trains_validates_and_checkpoints(trained_run, checkpoint):
    run_dir, _ = trained_run
    assert checkpoint.is_file() and (run_dir / "config.yaml").is_file()
    assert (run_dir / "checkpoints" / f"step-{TRAIN_STEPS:07d}.ckpt").is_file()
    scalars = _scalars(run_dir)
    for tag in ("train/loss", "train/recon", "train/velocity", "train/kl", "val/loss", "val/lip_rmse_over_std"):
        assert tag in scalars, f"{tag} not logged"
    for group in group_indices():
        assert len(scalars[f"val/{group}_mae"]) == 2  # validated at half way and at the end
    # synthetic motion carries per-frame white noise no 4x-compressed latent can keep: a modest drop
    assert scalars["train/loss"][-1] < 0.9 * scalars["train/loss"][0]
    assert scalars["val/loss"][-1] < scalars["val/loss"][0]
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    assert "val/reconstruction_curves" in events.Tags()["images"]


def test_checkpoint_rebuilds_the_same_module(checkpoint, synthetic_shards):
    module = MotionVAELightningModule.load_from_checkpoint(checkpoint, map_location="cpu")
    assert isinstance(module.cfg, VAEExperiment) and module.cfg.vae.latent_dim == 16
    stored = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    for name, tensor in module.state_dict().items():
        torch.testing.assert_close(tensor, stored[name], rtol=0, atol=0, msg=name)
    stats = MotionStats.load(synthetic_shards / "stats.json")
    torch.testing.assert_close(module.motion_mean, torch.as_tensor(stats.mean))
    # The latent statistics of the last validation are stored with the weights.
    assert module.latent_count.item() > 0 and (module.latent_std > 0).all()
    motion = torch.randn(2, 80, 70)
    with torch.no_grad():
        again = MotionVAELightningModule.load_from_checkpoint(checkpoint, map_location="cpu")
        torch.testing.assert_close(module.ema.embed(motion), again.ema.embed(motion))


def test_validation_errors_are_in_real_units(checkpoint, synthetic_shards):
    """Re-validate the trained checkpoint with Lightning and recompute the logged errors by hand."""
    module = MotionVAELightningModule.load_from_checkpoint(checkpoint, map_location="cpu")
    data = DataConfig(
        train_shards=str(synthetic_shards / "train-*.tar"),
        val_shards=str(synthetic_shards / "val-*.tar"),
        stats_path=str(synthetic_shards / "stats.json"),
        num_workers=0,
    )
    datamodule = MotionDataModule(data, micro_batch_size=4)
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False)
    (metrics,) = trainer.validate(module, datamodule=datamodule, verbose=False)

    truth, recon = [], []
    with torch.no_grad():
        for batch in datamodule.val_dataloader():
            truth.append(batch["motion"])
            recon.append(module.ema.decode(module.ema.encode(batch["motion"])[0]))
    truth, recon = torch.cat(truth), torch.cat(recon)
    std = torch.as_tensor(MotionStats.load(data.stats_path).std)
    real_error = (recon - truth).abs() * std  # de-normalising multiplies differences by the data's std
    for group, indices in group_indices().items():
        expected = real_error[..., indices].mean()
        assert metrics[f"val/{group}_mae"] == pytest.approx(expected.item(), rel=1e-4)
    lip_ratio = (recon - truth)[..., list(LIP_DIMS)].square().mean(dim=(0, 1)).sqrt().mean()
    assert metrics["val/lip_rmse_over_std"] == pytest.approx(lip_ratio.item(), rel=1e-4)
    assert metrics["val/lip_rmse_over_std"] < 1.0  # better than predicting the mean pose


def test_two_rank_ddp_run_shares_its_latent_statistics(synthetic_shards, tmp_path):
    """The same command on two CPU ranks (DDP, gloo) in its own process: it trains, validates and stores latent
    statistics reduced over both ranks, and the checkpoint loads as a LatentSpace. (A step checkpoint is written
    before that step's validation, so `last` at step 6 holds the statistics of the validation at step 3.)"""
    result = run_train(
        synthetic_shards,
        tmp_path,
        "train.strategy=ddp",
        "train.devices=2",
        "train.global_batch_size=8",
        "train.micro_batch_size=4",
        "train.max_steps=6",
        "train.val_every_n_steps=3",
        "train.checkpoint_every_n_steps=3",
        "train.run_name=ddp",
    )
    assert result.returncode == 0, f"training failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    space = LatentSpace.from_checkpoint(tmp_path / "ddp" / "checkpoints" / "last.ckpt")
    single_rank_frames = 4 * 80 // space.downsample  # 4 validation clips, one 80-frame window each
    assert space.latent_count.item() == 2 * single_rank_frames  # summed over both ranks
    assert space.encode(torch.zeros(1, 80, 70)).shape == (1, 40, 16)
