"""Joint attention and 1-D rotary position embedding (RoPE), as plain functions.

RoPE rotates each adjacent channel pair (2i, 2i + 1) of a head by the angle `position * theta ** (-2i / D)`,
the interleaved convention of the released MoDA code, so imported weights see the same rotations. Positions are
explicit integer ids per token; `MoDA.forward` is the one place that decides which tokens get which position.
A token at position 0 is not rotated at all.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor


def rope_frequencies(positions: Tensor, head_dim: int, theta: float) -> Tensor:
    """The rotation of every channel pair of a head for integer positions [L], as (cos, sin): [L, D / 2, 2].

    Real storage is also the view of the unit complex numbers (`torch.view_as_complex`, free): eager code
    multiplies complex numbers, compiled code the real pairs (inductor generates no code for complex ops)."""
    if head_dim % 2:
        raise ValueError(f"RoPE needs an even head dimension, got {head_dim}")
    # float64 for the angles: position * frequency loses digits in float32 at long sequences.
    exponents = torch.arange(0, head_dim, 2, dtype=torch.float64, device=positions.device) / head_dim
    angles = positions.to(torch.float64)[:, None] * theta ** (-exponents)[None, :]
    return torch.stack([angles.cos(), angles.sin()], dim=-1).to(torch.float32)


def apply_rope(x: Tensor, freqs: Tensor) -> Tensor:
    """Rotate the channel pairs of x [B, L, H, D] by its L tokens' rotations `freqs` [L, D / 2, 2] (cos, sin).

    Eager: one complex multiply, about 9x faster on CPU than the real-arithmetic form with its stack and copies.
    Compiled: the real form, which inductor fuses into one pass.
    """
    pairs = x.float().unflatten(-1, (-1, 2))  # [B, L, H, D/2, 2]
    if torch.compiler.is_compiling():
        cos, sin = freqs[:, None, :, 0], freqs[:, None, :, 1]  # [L, 1, D/2]
        real, imag = pairs[..., 0], pairs[..., 1]
        rotated = torch.stack([real * cos - imag * sin, real * sin + imag * cos], dim=-1)
    else:
        rotated = torch.view_as_real(torch.view_as_complex(pairs) * torch.view_as_complex(freqs)[:, None, :])
    return rotated.flatten(-2).type_as(x)


def attention(q: Tensor, k: Tensor, v: Tensor, freqs: Tensor, key_bias: Tensor | None = None) -> Tensor:
    """Scaled dot-product attention of q, k, v [B, L, H, D] with RoPE on q and k; returns [B, L, H * D].

    Token-major [B, L, H, D] is the layout the projections produce: norms and RoPE then run on contiguous rows
    (on head-major strided views they were several times slower), and SDPA takes the transposed views as is.

    `key_bias` [L] is added to every query's logit for each key. A token that stands for m identical copies of
    itself gets log(m): softmax over m equal keys equals one key with its logit raised by log(m), so the
    network computes exactly what it would with the copies materialised.
    """
    q, k = apply_rope(q, freqs).transpose(1, 2), apply_rope(k, freqs).transpose(1, 2)
    mask = None if key_bias is None else key_bias.to(q.dtype)[None, None, None, :]
    out = F.scaled_dot_product_attention(q, k, v.transpose(1, 2), attn_mask=mask)
    return rearrange(out, "B H L D -> B L (H D)")


def copies_bias(lengths: list[int], copies: list[int], device: torch.device | None = None) -> Tensor | None:
    """The key bias [sum(lengths)] for stream token groups where each token stands for `copies` identical ones."""
    if all(m == 1 for m in copies):
        return None
    return torch.cat([torch.full((n,), math.log(m), device=device) for n, m in zip(lengths, copies)])
