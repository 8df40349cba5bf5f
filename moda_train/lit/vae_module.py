"""The LightningModule that trains the motion VAE: a thin shell around the VAE, its EMA copy and the loss."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torchmetrics import MeanMetric, MeanSquaredError
from typing_extensions import override

from moda_train.core.config_loader import config_from_dict
from moda_train.core.motion_layout import LIP_DIMS, MOTION_DIM, group_indices
from moda_train.core.stats import MotionStats
from moda_train.experiment import VAEExperiment
from moda_train.lit.base import EMATrainedModule
from moda_train.lit.ema import make_ema
from moda_train.lit.figures import motion_curves
from moda_train.lit.guards import guard_loss
from moda_train.models.latent_space import LatentMoments
from moda_train.models.motion_vae import MotionVAE, kl_to_standard_normal
from moda_train.models.vae_config import VAEConfig

FIGURE_WINDOWS = 4  # validation windows drawn in the TensorBoard figure
STAGE_IDS = {"train": 0, "val": 1}


def vae_loss(
    model: MotionVAE,
    motion: Tensor,
    cfg: VAEConfig,
    dim_weights: Tensor,
    kl_weight: float,
    generator: torch.Generator | None = None,
) -> dict[str, Tensor]:
    """Named loss terms plus `loss` for normalised motion [B, T, D].

    recon: MSE weighted per dimension (`dim_weights`, the lip dimensions weigh more); velocity: MSE of the
    frame-to-frame differences; kl: nats per latent number. With free bits, each latent channel's KL (averaged
    over batch and time) is floored at `kl_free_bits` inside the loss, so channels under it get no KL gradient.
    """
    recon, mean, logvar = model(motion, generator)
    error = (recon - motion).square()
    velocity = (
        (recon.diff(dim=1) - motion.diff(dim=1)).square().mean() if motion.shape[1] > 1 else error.new_zeros(())
    )
    kl_per_channel = kl_to_standard_normal(mean, logvar).mean(dim=(0, 1))  # [C]
    kl_penalised = kl_per_channel.clamp(min=cfg.kl_free_bits).mean()
    recon_term = (error * dim_weights).mean()
    return {
        "loss": recon_term + cfg.velocity_weight * velocity + kl_weight * kl_penalised,
        "recon": recon_term,
        "mse": error.mean(),
        "velocity": velocity,
        "kl": kl_per_channel.mean(),
        "kl_weight": error.new_tensor(kl_weight),
    }


class MotionVAELightningModule(EMATrainedModule):
    """Holds `model`, its EMA copy, the motion statistics and the latent statistics; steps share `_shared_step`.

    `config` is the resolved experiment as a plain dict, saved as the checkpoint's hyperparameters, so
    `MotionVAELightningModule.load_from_checkpoint(path)` rebuilds the same VAE with no other file. Validation
    runs the EMA model and, at its end, stores the per-channel statistics of the posterior means over the
    validation windows in `latent_mean` / `latent_std` (what `LatentSpace.from_checkpoint` standardises with).
    """

    def __init__(self, config: dict[str, Any], stats: MotionStats | None = None) -> None:
        super().__init__()
        self.save_hyperparameters({"config": config})
        self.cfg: VAEExperiment = config_from_dict(config, VAEExperiment)
        vae = self.cfg.vae
        problems = []
        if vae.motion_dim != MOTION_DIM:
            problems.append(
                f"vae.motion_dim={vae.motion_dim}: the lip weights and metrics need the {MOTION_DIM}-d layout"
            )
        window = self.cfg.data.window_frames
        if window % vae.downsample:
            problems.append(f"data.window_frames={window} is not a multiple of vae.downsample={vae.downsample}")
        if problems:
            raise ValueError("; ".join(problems))
        self.model = MotionVAE(vae)
        self.ema = make_ema(self.model)
        # Saved in every checkpoint: real-unit metrics and downstream users need the normalisation trained with.
        stats = stats or MotionStats.from_arrays([0.0] * vae.motion_dim, [1.0] * vae.motion_dim)
        self.register_buffer("motion_mean", torch.as_tensor(stats.mean))
        self.register_buffer("motion_std", torch.as_tensor(stats.std))
        self.register_buffer("latent_mean", torch.zeros(vae.latent_dim))
        self.register_buffer("latent_std", torch.ones(vae.latent_dim))
        self.register_buffer("latent_count", torch.zeros(()))  # latent frames the statistics came from; 0 = none
        dim_weights = torch.ones(vae.motion_dim)
        dim_weights[list(LIP_DIMS)] = vae.lip_weight
        self.register_buffer("dim_weights", dim_weights, persistent=False)
        self.groups = group_indices()
        # Errors over the whole validation set (torchmetrics sums them over ranks): per group in real units, and
        # per lip dimension in normalised units, i.e. relative to the data's std.
        self.val_group_mae = nn.ModuleDict({group: MeanMetric() for group in self.groups})
        self.val_lip_mse = MeanSquaredError(num_outputs=len(LIP_DIMS))
        self._latent_moments: LatentMoments | None = None

    def _generator(self, batch_idx: int, stage: str) -> torch.Generator:
        """Posterior noise comes from a generator seeded by the data position (not a running RNG), so a resumed
        run draws what an uninterrupted one would, and validation draws the same noise every time."""
        rank = self.global_rank if stage == "train" else 0
        epoch = self.current_epoch if stage == "train" else 0
        key = [self.cfg.train.seed, STAGE_IDS[stage], rank, epoch, batch_idx]
        seed = int(np.random.SeedSequence(key).generate_state(1, dtype=np.uint64)[0] >> 1)
        return torch.Generator(device=self.device).manual_seed(seed)

    def _shared_step(self, batch: dict, batch_idx: int, stage: str) -> Tensor:
        model = self.model if stage == "train" else self.ema
        kl_weight = self.cfg.vae.kl_weight_at(self.global_step)
        terms = vae_loss(
            model, batch["motion"], self.cfg.vae, self.dim_weights, kl_weight, self._generator(batch_idx, stage)
        )
        self.log_dict(
            {f"{stage}/{name}": value for name, value in terms.items()},
            prog_bar=False,
            on_step=stage == "train",
            on_epoch=stage != "train",
            batch_size=len(batch["motion"]),
            sync_dist=stage != "train",
        )
        return terms["loss"]

    @override
    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        return guard_loss(self, self._shared_step(batch, batch_idx, "train"))

    @override
    def on_validation_epoch_start(self) -> None:
        self._latent_moments = LatentMoments(self.cfg.vae.latent_dim, self.device)

    @override
    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._shared_step(batch, batch_idx, "val")
        motion = batch["motion"]
        with torch.no_grad():
            mean, _ = self.ema.encode(motion)
            recon = self.ema.decode(mean)  # the deterministic reconstruction a user of the latents gets
        self._latent_moments.update(mean)
        lips = list(LIP_DIMS)
        self.val_lip_mse.update(recon[..., lips].reshape(-1, len(lips)), motion[..., lips].reshape(-1, len(lips)))
        recon_real, truth_real = self.denormalize(recon), self.denormalize(motion)
        for group, indices in self.groups.items():
            self.val_group_mae[group].update((recon_real - truth_real)[..., indices].abs())
        experiment = getattr(self.logger, "experiment", None)
        if batch_idx == 0 and self.global_rank == 0 and hasattr(experiment, "add_figure"):
            count = min(FIGURE_WINDOWS, len(motion))
            figure = motion_curves(
                recon_real[:count].float().cpu().numpy(),
                truth_real[:count].float().cpu().numpy(),
                batch["key"][:count],
                label="reconstructed",
            )
            experiment.add_figure("val/reconstruction_curves", figure, global_step=self.global_step)

    @override
    def on_validation_epoch_end(self) -> None:
        for group, metric in self.val_group_mae.items():
            self.log(f"val/{group}_mae", metric.compute())
            metric.reset()
        # The headline figure: lip RMSE relative to the data's own spread (1.0 = no better than the mean pose).
        self.log("val/lip_rmse_over_std", self.val_lip_mse.compute().sqrt().mean())
        self.val_lip_mse.reset()
        moments = self._latent_moments
        moments.sums = self.trainer.strategy.reduce(moments.sums, reduce_op="sum")
        mean, std, count = moments.compute()
        self.latent_mean.copy_(mean)
        self.latent_std.copy_(std)
        self.latent_count.fill_(count)
