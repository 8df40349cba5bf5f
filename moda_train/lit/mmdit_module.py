"""The LightningModule that trains the MoDA MMDiT with rectified flow: a thin shell around model, EMA and flow."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from typing_extensions import override

from moda_train.core.config_loader import config_from_dict
from moda_train.core.motion_layout import LIP_DIMS, MOTION_DIM, group_indices
from moda_train.core.stats import MotionStats
from moda_train.experiment import MMDiTExperiment
from moda_train.flow.loss import flow_loss
from moda_train.flow.sampler import sample
from moda_train.lit.alse_loss import ALSELoss
from moda_train.lit.base import EMATrainedModule
from moda_train.lit.ema import make_ema
from moda_train.lit.figures import motion_curves
from moda_train.lit.guards import guard_loss
from moda_train.models.latent_space import LatentSpace
from moda_train.models.moda import MoDA

FIGURE_WINDOWS = 4  # validation windows drawn in the TensorBoard figure


class MoDALightningModule(EMATrainedModule):
    """Holds `model`, its EMA copy and the motion statistics; training, validation share `_shared_step`.

    `config` is the resolved experiment as a plain dict: it is saved as the checkpoint's hyperparameters, so
    `MoDALightningModule.load_from_checkpoint(path)` rebuilds the same model with no other file.
    """

    def __init__(self, config: dict[str, Any], stats: MotionStats | None = None) -> None:
        super().__init__()
        self.save_hyperparameters({"config": config})
        self.cfg: MMDiTExperiment = config_from_dict(config, MMDiTExperiment)
        # The space the flow works in: identity for raw motion, or a frozen VAE (a submodule, so its weights and
        # latent statistics travel in every checkpoint, but outside the optimizer and the EMA). The VAE file is
        # read once, when a run starts; its config is then recorded in the hyperparameters, so a checkpoint
        # rebuilds the space from that record and its own state dict, without the VAE file.
        vae = self.cfg.model.motion_space == "vae"
        if not vae:
            self.space = LatentSpace.raw()
        elif self.cfg.model.vae_config:
            self.space = LatentSpace.from_config(self.cfg.model.vae_config)
        else:
            self.space = LatentSpace.from_checkpoint(self.cfg.model.vae_checkpoint)
            config = {**config, "model": {**config.get("model", {}), "vae_config": self.space.vae_config()}}
            self.save_hyperparameters({"config": config})
        self.space.latent_frames(self.cfg.data.window_frames)  # a window the VAE cannot encode fails here
        self.model = MoDA(
            dataclasses.replace(
                self.cfg.model,
                motion_dim=self.space.latent_dim,
                prev_motion_frames=self.space.prev_latent_frames(self.cfg.data.prev_frames),
                audio_dim=self.space.stacked_dim(self.cfg.model.audio_dim),
            )
        )
        self.ema = make_ema(self.model)
        if self.cfg.model.compile:  # the EMA too: validation and sampling run through it
            self.model.compile_blocks()
            self.ema.compile_blocks()
        self.groups = group_indices() if self.space.is_raw else None  # latents have no expression/pose/lip
        # Validation scores the fully conditioned model: no condition dropout there.
        self.val_flow = dataclasses.replace(self.cfg.flow, drop_audio=0.0, drop_emotion=0.0, drop_prev_motion=0.0)
        # Saved in every checkpoint: sampling de-normalises with the statistics the model was trained on.
        if stats is not None and vae:  # the VAE must have been trained on the same normalisation
            self.space.check_motion_stats(torch.as_tensor(stats.mean), torch.as_tensor(stats.std))
        stats = stats or MotionStats.from_arrays([0.0] * MOTION_DIM, [1.0] * MOTION_DIM)
        self.register_buffer("motion_mean", torch.as_tensor(stats.mean))
        self.register_buffer("motion_std", torch.as_tensor(stats.std))
        self.sync_loss: ALSELoss | None = None  # built in setup(): inference never needs the expert's file

    def _generator(self, batch_idx: int, stage: str) -> torch.Generator:
        """Noise, t and condition dropout come from a generator seeded by the data position, not from a running
        RNG: a resumed run (on every rank) draws exactly what an uninterrupted one would, and validation draws
        the same every time."""
        if stage == "train":
            stream, index = 1 + self.global_rank, self.trainer.fit_loop.total_batch_idx
        else:
            stream, index = 0, batch_idx
        seed = ((self.cfg.train.seed * 1_000_003 + stream) * 1_000_000_007 + index) % 2**63
        return torch.Generator(device=self.device).manual_seed(seed)

    def _space_conditions(self, cond: dict) -> dict:
        """Conditions at the flow's frame rate: audio frames stacked and previous motion encoded for the VAE
        space (unchanged in the raw space)."""
        return {
            "audio": self.space.stack_frames(cond["audio"]),
            "identity": cond["identity"],
            "emotion": cond["emotion"],
            "prev_motion": self.space.encode_prev(cond["prev_motion"]),
        }

    def _shared_step(self, batch: dict, batch_idx: int, stage: str) -> torch.Tensor:
        model = self.model if stage == "train" else self.ema
        cond = self._space_conditions(batch)
        flow = self.cfg.flow if stage == "train" else self.val_flow
        generator = self._generator(batch_idx, stage)
        terms = flow_loss(model, self.space.encode(batch["motion"]), cond, flow, self.groups, generator=generator)
        if self.sync_loss is not None:
            x0_hat = self.space.decode(terms["x0_hat"])  # the expert judges 70-d lips, in either space
            sync = self.sync_loss(x0_hat, batch["motion"], batch["audio"], terms["t"])
            terms["loss"] = terms["loss"] + sync["loss"]
            terms.update({f"alse/{name}": value for name, value in sync.items()})
        scalars = {f"{stage}/{name}": v for name, v in terms.items() if v.ndim == 0 and name != "loss"}
        self.log_dict(
            scalars,
            prog_bar=False,
            on_step=stage == "train",
            on_epoch=stage != "train",
            batch_size=len(batch["motion"]),
            sync_dist=stage != "train",
        )
        self.log(
            f"{stage}/loss",
            terms["loss"],
            prog_bar=True,
            batch_size=len(batch["motion"]),
            sync_dist=stage != "train",
        )
        return terms["loss"]

    @override
    def setup(self, stage: str) -> None:
        super().setup(stage)
        sync = self.cfg.sync
        if stage == "fit" and sync.checkpoint and self.sync_loss is None:
            # The buffers hold the divisors already: no convention is applied again.
            stats = MotionStats(self.motion_mean.cpu().numpy(), self.motion_std.cpu().numpy())
            self.sync_loss = ALSELoss.from_checkpoint(
                sync.checkpoint, sync.weight, sync.tau, sync.noise_power, motion_stats=stats
            )

    @override
    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return guard_loss(self, self._shared_step(batch, batch_idx, "train"))

    @override
    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._shared_step(batch, batch_idx, "val")
        if batch_idx == 0:
            self._log_samples(batch)

    @torch.no_grad()
    def _log_samples(self, batch: dict) -> None:
        """Sample the first windows with the EMA model; log lip error in real units and a curves figure."""
        count = min(FIGURE_WINDOWS, len(batch["motion"]))
        cond = {key: batch[key][:count] for key in ("audio", "identity", "emotion", "prev_motion")}
        generated = self.denormalize(self.sample(cond, batch["motion"].shape[1], seed=0))
        truth = self.denormalize(batch["motion"][:count])
        lip_error = (generated - truth)[..., list(LIP_DIMS)].abs().mean()
        self.log("val/sample_lip_mae", lip_error, batch_size=count, sync_dist=True)
        experiment = getattr(self.logger, "experiment", None)
        if self.global_rank == 0 and hasattr(experiment, "add_figure"):
            figure = motion_curves(
                generated.float().cpu().numpy(), truth.float().cpu().numpy(), batch["key"][:count]
            )
            experiment.add_figure("val/motion_curves", figure, global_step=self.global_step)

    def noise_shape(self, num_frames: int) -> tuple[int, int]:
        """(frames, channels) of the flow's starting noise for a window of `num_frames` video frames."""
        return self.space.latent_frames(num_frames), self.space.latent_dim

    def sample(
        self,
        cond: dict,
        num_frames: int,
        seed: int = 0,
        model: torch.nn.Module | None = None,
        noise: torch.Tensor | None = None,
        steps: int | None = None,
        guidance_audio: float | None = None,
        guidance_emotion: float | None = None,
    ) -> torch.Tensor:
        """Normalised 70-d motion [B, T, 70] from conditions at the video frame rate (audio [B, T, A], normalised
        previous motion [B, P, 70], identity, emotion), with the EMA weights, the configured time grid and, unless
        given, the configured steps and guidance. `noise` [B, *noise_shape(T)] replaces the draw from `seed`."""
        flow = self.cfg.flow
        generator = torch.Generator(device=self.device).manual_seed(seed)
        latent = sample(
            model or self.ema,
            self._space_conditions(cond),
            self.space.latent_frames(num_frames),
            steps=flow.sample_steps if steps is None else steps,
            guidance_audio=flow.guidance_audio if guidance_audio is None else guidance_audio,
            guidance_emotion=flow.guidance_emotion if guidance_emotion is None else guidance_emotion,
            generator=generator,
            noise=noise,
            null_emotion=flow.null_emotion,
            grid=flow.sample_grid,
        )
        return self.space.decode(latent)
