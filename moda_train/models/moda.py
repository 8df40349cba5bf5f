"""The MoDA MMDiT: noisy motion + audio, emotion, identity, previous motion -> velocity of the motion.

Coarse-to-fine fusion in three stages (DESIGN §1):
  stage 1  four streams (motion, audio, emotion, identity), separate weights, one joint attention;
  stage 2  two streams (motion; audio + emotion + identity sharing weights), joint attention;
  stage 3  single-stream blocks over all tokens; the final layer reads the motion tokens.

Token positions for RoPE (the one place they are decided): motion and audio tokens carry their frame index
0..T-1. In stage 1 the emotion and identity streams hold one token each at position 0 (not rotated); the released
model holds T identical, unrotated copies there, and a log(T) key bias makes the single token attend and be
attended exactly as the T copies would (see `attention.attention`), at a fraction of the cost. From stage 2 on,
the emotion and identity tokens are broadcast to T copies with frame positions 0..T-1, as released.

Null conditions: the null audio is the all-zero feature vector (its embedding is the audio MLP's learned response
to zeros, so no extra parameter), or with `null_audio: learned` a trained feature vector; the null emotion is class
`num_emotions`. The network sees the flow time t in
[0, 1] only; it embeds 1000 t as MoDA does.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from moda_train.models.attention import copies_bias, rope_frequencies
from moda_train.models.config import ModelConfig
from moda_train.models.layers import (
    AudioEmbedder,
    EmotionEmbedder,
    FinalLayer,
    MLPEmbedder,
    Modulation,
    MultiStreamBlock,
    SingleStreamBlock,
    TimestepEmbedder,
)


class MoDA(nn.Module):
    """The MoDA multi-modal diffusion transformer; predicts the rectified-flow velocity of a motion window."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        h, heads, ratio, qk = config.hidden_size, config.num_heads, config.mlp_ratio, config.qk_norm
        self.motion_embed = MLPEmbedder((1 + config.prev_motion_frames) * config.motion_dim, h)
        self.audio_embed = AudioEmbedder(config.audio_dim, h)
        self.identity_embed = MLPEmbedder(config.identity_dim, h)
        self.emotion_embed = EmotionEmbedder(config.num_emotions, h)
        self.time_embed = TimestepEmbedder(h, config.timestep_freq_dim)
        self.four_stream = nn.ModuleList(
            MultiStreamBlock(h, heads, ratio, qk, num_streams=4) for _ in range(config.depth_four_stream)
        )
        self.two_stream = nn.ModuleList(
            MultiStreamBlock(h, heads, ratio, qk, num_streams=2) for _ in range(config.depth_two_stream)
        )
        self.single_stream = nn.ModuleList(
            SingleStreamBlock(h, heads, ratio, qk) for _ in range(config.depth_single_stream)
        )
        self.final = FinalLayer(h, config.motion_dim)
        if config.null_audio == "learned":
            self.null_audio = nn.Parameter(torch.zeros(config.audio_dim))
        self.initialize_weights()

    @property
    def null_emotion(self) -> int:
        """The class id of the null (dropped / unknown) emotion."""
        return self.config.num_emotions

    def initialize_weights(self) -> None:
        """DiT's adaLN-Zero init: xavier linears, zero biases, N(0, 0.02) embeddings and timestep MLP, zero
        adaLN outputs and a zero final projection, so every block starts as the identity and v starts at 0."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.normal_(self.emotion_embed.table.weight, std=0.02)
        nn.init.normal_(self.time_embed.fc1.weight, std=0.02)
        nn.init.normal_(self.time_embed.fc2.weight, std=0.02)
        for module in self.modules():
            if isinstance(module, Modulation):
                nn.init.zeros_(module.lin.weight)
                nn.init.zeros_(module.lin.bias)
        for layer in (self.final.modulation, self.final.linear):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(
        self,
        x_t: Tensor,
        t: Tensor,
        audio: Tensor,
        identity: Tensor,
        emotion: Tensor,
        prev_motion: Tensor,
        audio_null: Tensor | None = None,
    ) -> Tensor:
        """Velocity [B, T, C] of the noisy motion x_t [B, T, C] at flow time t [B] (0 = data, 1 = noise).

        audio [B, T, A] per-frame features; identity [B, identity_dim]; emotion [B] int64 (num_emotions = null);
        prev_motion [B, P, C] frames before the window; audio_null [B] bool selects the null audio per sample.
        """
        self._check_inputs(x_t, t, audio, identity, emotion, prev_motion, audio_null)
        B, T, _ = x_t.shape
        if audio_null is not None:
            null = self.null_audio.to(audio.dtype) if self.config.null_audio == "learned" else audio.new_zeros(())
            audio = torch.where(audio_null[:, None, None], null, audio)  # [B, T, A]
        prev = prev_motion.flatten(1)[:, None, :].expand(B, T, -1)  # [B, T, P*C]
        x = self.motion_embed(torch.cat([x_t, prev], dim=-1))  # [B, T, H]
        a = self.audio_embed(audio)  # [B, T, H]
        e_vec = self.emotion_embed(emotion)  # [B, H]
        e = e_vec[:, None, :]  # [B, 1, H]
        i = self.identity_embed(identity)[:, None, :]  # [B, 1, H]
        c = self.time_embed(t) + e_vec  # [B, H] adaLN conditioning

        frames = torch.arange(T, device=x_t.device)
        zero = frames.new_zeros(1)
        freqs1 = self._rope(torch.cat([frames, frames, zero, zero]))  # [2T+2, D/2]
        bias1 = copies_bias([2 * T, 2], [1, T], device=x_t.device)  # [2T+2] log(T) on emotion, identity
        for block in self.four_stream:
            x, a, e, i = block([x, a, e, i], c, freqs1, bias1)  # [B, T, H], [B, T, H], [B, 1, H], [B, 1, H]

        cond = torch.cat([a, e.expand(B, T, -1), i.expand(B, T, -1)], dim=1)  # [B, 3T, H]
        freqs = self._rope(frames.repeat(4))  # [4T, D/2]
        for block in self.two_stream:
            x, cond = block([x, cond], c, freqs)  # [B, T, H], [B, 3T, H]

        tokens = torch.cat([x, cond], dim=1)  # [B, 4T, H]
        for block in self.single_stream:
            tokens = block(tokens, c, freqs)  # [B, 4T, H]
        return self.final(tokens[:, :T], c)  # [B, T, C]

    def compile_blocks(self, **options: object) -> None:
        """torch.compile every transformer block in place (regional compilation), for training and sampling.

        Blocks of one kind share their compiled code, so a run compiles three graphs (four-stream, two-stream,
        single-stream), not 21. `Module.compile` keeps each block where it is: state-dict names do not change
        (no `_orig_mod.`), and the embedders, input checks and module hooks stay eager. `dynamic=True` makes
        batch and token counts symbolic, so another window length, a smaller last batch or the one- to
        three-pass guidance batches reuse the same code (torch specialises size 1: batch 1 compiles once more).
        `options` go to torch.compile (e.g. `mode`).
        """
        for block in (*self.four_stream, *self.two_stream, *self.single_stream):
            block.compile(dynamic=True, **options)

    def _rope(self, positions: Tensor) -> Tensor:
        freqs = rope_frequencies(positions, self.config.head_dim, self.config.rope_theta)  # [L, D/2]
        # The table's width is fixed by the architecture. Marked static, torch.compile's duck sizing cannot give it
        # the batch's symbol when the batch happens to equal head_dim / 2 (that would specialise the batch size).
        torch._dynamo.mark_static(freqs, 1)
        return freqs

    def _check_inputs(
        self,
        x_t: Tensor,
        t: Tensor,
        audio: Tensor,
        identity: Tensor,
        emotion: Tensor,
        prev_motion: Tensor,
        audio_null: Tensor | None,
    ) -> None:
        cfg = self.config
        if x_t.ndim != 3 or x_t.shape[-1] != cfg.motion_dim:
            raise ValueError(f"x_t must be [B, T, {cfg.motion_dim}], got {list(x_t.shape)}")
        B, T, C = x_t.shape
        expected = {
            "t": (t, [B]),
            "audio": (audio, [B, T, cfg.audio_dim]),
            "identity": (identity, [B, cfg.identity_dim]),
            "emotion": (emotion, [B]),
            "prev_motion": (prev_motion, [B, cfg.prev_motion_frames, C]),
        }
        if audio_null is not None:
            expected["audio_null"] = (audio_null, [B])
        for name, (tensor, shape) in expected.items():
            if list(tensor.shape) != shape:
                raise ValueError(
                    f"{name} must have shape {shape} (x_t is {list(x_t.shape)}), got {list(tensor.shape)}"
                )
        # The id range is checked on CPU only: on an accelerator it would cost a host sync every step, and an
        # out-of-range id there stops at the embedding's device-side assert instead.
        out_of_range = (
            emotion.device.type == "cpu"
            and emotion.numel() > 0
            and not 0 <= int(emotion.min()) <= int(emotion.max()) <= cfg.num_emotions
        )
        if emotion.dtype != torch.long or out_of_range:
            raise ValueError(
                f"emotion must be int64 class ids in 0..{cfg.num_emotions} ({cfg.num_emotions} = null)"
            )
        if audio_null is not None and audio_null.dtype != torch.bool:
            raise ValueError(f"audio_null must be a bool tensor, got {audio_null.dtype}")


def count_parameters(config: ModelConfig) -> int:
    """Parameters of MoDA(config), counted on the meta device (nothing is allocated)."""
    with torch.device("meta"):
        model = MoDA(config)
    return sum(p.numel() for p in model.parameters())
