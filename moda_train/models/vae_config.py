"""Configuration of the temporal motion VAE: network sizes and the loss weights of its training objective."""

from __future__ import annotations

from dataclasses import dataclass

SUPPORTED_DOWNSAMPLING = (1, 2, 4)


@dataclass
class VAEConfig:
    motion_dim: int = 70
    """Numbers per frame of the (normalised) motion the VAE compresses."""
    latent_dim: int = 32
    """Latent channels per latent frame (the width the MMDiT works at with `motion_space: vae`)."""
    downsample: int = 4
    """Temporal downsampling factor: 1, 2 or 4 frames per latent frame; windows must be a multiple of it."""
    hidden_size: int = 256
    """Channels of the convolutional encoder and decoder."""
    blocks_per_level: int = 2
    """Residual blocks at each temporal resolution (dilations 1, 3, 9, ... widen the receptive field)."""
    lip_weight: float = 3.0
    """Reconstruction weight of the 18 lip dimensions (the other dimensions weigh 1): lip sync lives there."""
    velocity_weight: float = 1.0
    """Weight of the temporal-difference loss (MSE of frame-to-frame changes), which keeps jitter out."""
    kl_weight: float = 1.0e-4
    """Weight of the KL term (nats per latent number); small, so the latent stays informative."""
    kl_free_bits: float = 0.0
    """Free bits: a latent channel whose mean KL (nats per number) is below this is not penalised (0 = off)."""
    kl_warmup_steps: int = 0
    """Linear annealing of the KL weight from 0 to kl_weight over this many optimizer steps (0 = off)."""

    def __post_init__(self) -> None:
        problems = []
        if self.downsample not in SUPPORTED_DOWNSAMPLING:
            problems.append(f"vae.downsample={self.downsample}: choose one of {SUPPORTED_DOWNSAMPLING}")
        for name in ("motion_dim", "latent_dim", "hidden_size", "blocks_per_level"):
            if getattr(self, name) < 1:
                problems.append(f"vae.{name} must be >= 1")
        for name in ("lip_weight", "velocity_weight", "kl_weight", "kl_free_bits"):
            if getattr(self, name) < 0:
                problems.append(f"vae.{name} must be >= 0")
        if self.kl_warmup_steps < 0:
            problems.append("vae.kl_warmup_steps must be >= 0")
        if self.hidden_size % 8:
            problems.append(f"vae.hidden_size={self.hidden_size} must be a multiple of 8 (GroupNorm groups)")
        if problems:
            raise ValueError("; ".join(problems))

    def kl_weight_at(self, step: int) -> float:
        """The annealed KL weight at an optimizer step."""
        if self.kl_warmup_steps == 0:
            return self.kl_weight
        return self.kl_weight * min(1.0, step / self.kl_warmup_steps)
