"""Model configuration. The defaults are MoDA-B as released (about 373 M parameters, DESIGN §1)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class ModelConfig:
    motion_dim: int = 70
    """Numbers per frame of the motion the flow model generates (70 raw, or the VAE latent width)."""
    prev_motion_frames: int = 1
    """How many previous frames condition a window; broadcast over time and concatenated to the noisy motion."""
    audio_dim: int = 9216
    """Audio feature size per video frame, flattened (HuBERT-base: 12 layers x 768 = 9216)."""
    identity_dim: int = 63
    """Size of the identity condition: the reference photo's canonical keypoints (21 x 3)."""
    num_emotions: int = 8
    """Emotion classes; one more embedding row is the null/dropped class."""
    hidden_size: int = 768
    """Token width of every stream."""
    num_heads: int = 12
    """Attention heads; hidden_size must divide by it."""
    mlp_ratio: float = 4.0
    """MLP hidden width as a multiple of hidden_size."""
    depth_four_stream: int = 3
    """Stage 1: blocks with separate weights for motion, audio, emotion and identity tokens."""
    depth_two_stream: int = 6
    """Stage 2: blocks with one weight set for motion and one shared by all condition tokens."""
    depth_single_stream: int = 12
    """Stage 3: single-stream blocks over all tokens (fused QKV+MLP input projection)."""
    qk_norm: bool = True
    """RMS-normalise queries and keys per head before attention."""
    rope_theta: float = 256.0
    """RoPE base over the frame index."""
    timestep_freq_dim: int = 256
    """Width of the sinusoidal timestep embedding fed to the timestep MLP."""
    null_audio: str = "zeros"
    """The null (dropped / unconditional) audio feature: `zeros`, the all-zero feature (no parameter), or
    `learned`, a trained vector `null_audio` [audio_dim] (starts at zero). The released MoDA draws a random one."""

    compile: bool = False
    """torch.compile the transformer blocks for training and sampling (`MoDA.compile_blocks`); the first steps
    then take longer while the three block graphs compile (docs/model.md, benchmark)."""

    motion_space: str = "raw"
    """What the flow model generates: `raw` normalised 70-d motion, or `vae` latents of a frozen motion VAE (the
    training module resizes motion_dim, prev_motion_frames and audio_dim to the VAE's latent frames)."""
    vae_checkpoint: str = ""
    """The motion VAE checkpoint used with motion_space=vae (from a `vae` experiment); read when a run starts."""
    vae_config: dict[str, Any] = field(default_factory=dict)
    """The VAE's own config, recorded by the training module from vae_checkpoint: with it a checkpoint rebuilds
    its latent space from its own state dict, without the VAE file. Leave empty in experiment YAMLs."""

    def __post_init__(self) -> None:
        problems = []
        if self.motion_space not in ("raw", "vae"):
            problems.append(f"model.motion_space={self.motion_space!r}: choose raw or vae")
        elif self.motion_space == "vae" and not (self.vae_checkpoint or self.vae_config):
            problems.append("model.motion_space=vae needs model.vae_checkpoint (a trained motion VAE)")
        if self.null_audio not in ("zeros", "learned"):
            problems.append(f"model.null_audio={self.null_audio!r}: choose zeros or learned")
        if self.hidden_size % self.num_heads:
            problems.append(f"model.hidden_size={self.hidden_size} is not divisible by num_heads={self.num_heads}")
        elif (self.hidden_size // self.num_heads) % 2:
            problems.append("model.hidden_size / num_heads must be even (RoPE rotates pairs of channels)")
        for name in ("depth_four_stream", "depth_two_stream", "depth_single_stream", "prev_motion_frames"):
            if getattr(self, name) < 0:
                problems.append(f"model.{name} must be >= 0")
        for name in ("motion_dim", "audio_dim", "identity_dim", "num_emotions", "timestep_freq_dim"):
            if getattr(self, name) < 1:
                problems.append(f"model.{name} must be >= 1")
        if self.timestep_freq_dim % 2:
            problems.append("model.timestep_freq_dim must be even (cosine and sine halves)")
        if self.mlp_ratio <= 0:
            problems.append("model.mlp_ratio must be > 0")
        if self.rope_theta <= 1:
            problems.append("model.rope_theta must be > 1")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def head_dim(self) -> int:
        """Channels per attention head."""
        return self.hidden_size // self.num_heads
