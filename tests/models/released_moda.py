"""The released MoDA layout for tests: synthetic `net-200.pth` / `mean.pt` files and a reference evaluation.

`released_shapes` reads the released checkpoint's 408 names and shapes (released/moda_b_net200.tsv) and can scale
the widths down; `write_released_net` fills them with random tensors. `reference_velocity` and `reference_sample`
evaluate such weights the way the released code does, written from its documented behaviour (DESIGN §1, §7) in
plain functions over the released names, independent of this framework's modules and of the importer's rename
table: the motion embedder reads [previous motion, x_t]; stage 1 holds T identical emotion and identity tokens;
guidance substitutes a null audio feature and the null emotion, one scale for both; the sampler steps through
linspace(1, 0.001, N) and then to 0; motion is normalised as (x - mean) / (std + 1e-5).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

TSV = Path(__file__).with_name("released") / "moda_b_net200.tsv"
MODA_B_HIDDEN, MODA_B_HEAD_DIM = 768, 64


def released_shapes(hidden: int = MODA_B_HIDDEN, head_dim: int = MODA_B_HEAD_DIM, audio_dim: int = 9216):
    """{released name: shape} of net-200.pth, with every width that is a multiple of the hidden size (768 x k)
    rescaled to hidden x k, the per-head norms to head_dim and the audio input to audio_dim."""
    shapes = {}
    for line in TSV.read_text().splitlines()[1:]:
        name, shape = line.split("\t")[:2]
        dims = [int(d) for d in shape.strip("()").split(",") if d.strip()]
        if name == "audio_embedder.proj1.weight":
            dims = [hidden, audio_dim]
        elif ".attn1." in name and "_norm" in name:  # per-head query/key norms
            dims = [head_dim]
        else:
            dims = [d * hidden // MODA_B_HIDDEN if d % MODA_B_HIDDEN == 0 else d for d in dims]
        shapes[name] = tuple(dims)
    return shapes


def write_released_net(path: Path, seed: int = 0, **scale) -> dict[str, Tensor]:
    """A random state dict in the released layout (`released_shapes(**scale)`), saved as `path`, returned too.
    Weights are N(0, 1/fan_in) so activations keep their scale through 21 blocks; norms near 1."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape in released_shapes(**scale).items():
        if len(shape) == 2:
            state[name] = torch.randn(shape, generator=g) / math.sqrt(shape[1])
        elif "norm" in name:
            state[name] = 1.0 + 0.1 * torch.randn(shape, generator=g)
        else:
            state[name] = 0.1 * torch.randn(shape, generator=g)
    torch.save(state, path)
    return state


def write_released_stats(path: Path, seed: int = 0, dims: int = 70) -> dict[str, Tensor]:
    """A `mean.pt` as released: {"mean": [1, 70], "std": [1, 70]}, with some std exactly 0 (tz, never moving) and
    some below 1e-4, where the released convention (std + 1e-5) and a floor at 1e-4 differ most."""
    g = torch.Generator().manual_seed(seed)
    std = torch.rand(1, dims, generator=g) + 0.05
    std[0, 66] = 0.0  # tz
    std[0, 2:63:3][:5] = 3e-5  # some expression z-channels
    stats = {"mean": torch.randn(1, dims, generator=g), "std": std}
    torch.save(stats, path)
    return stats


def _rms(x: Tensor, weight: Tensor | None = None, eps: float = 1e-6) -> Tensor:
    x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return x if weight is None else x * weight


def _linear(w: dict, name: str, x: Tensor) -> Tensor:
    return F.linear(x, w[f"{name}.weight"], w.get(f"{name}.bias"))


def _rope(x: Tensor, positions: Tensor, theta: float = 256.0) -> Tensor:
    """Rotate channel pairs (2i, 2i+1) of x [B, H, L, D] by position * theta^(-2i/D)."""
    D = x.shape[-1]
    angle = positions.double()[:, None] * theta ** (-torch.arange(0, D, 2, dtype=torch.float64) / D)[None]
    cos, sin = angle.cos().float(), angle.sin().float()
    even, odd = x[..., 0::2], x[..., 1::2]
    return torch.stack([even * cos - odd * sin, even * sin + odd * cos], dim=-1).flatten(-2)


def _heads(x: Tensor, heads: int) -> Tensor:
    B, L, C = x.shape
    return x.view(B, L, heads, C // heads).transpose(1, 2)


def _joint_block(w: dict, streams: list[tuple[str, ...]], xs: list[Tensor], c: Tensor, pos, heads) -> list[Tensor]:
    """One released multi-stream block; `streams` holds each stream's names (`_stream`)."""
    qs, ks, vs, mods = [], [], [], []
    for (qkv, qn, kn, proj, mlp, ada), x in zip(streams, xs):
        m = _linear(w, ada, F.silu(c))[:, None].chunk(6, dim=-1)
        mods.append(m)
        q, k, v = _linear(w, qkv, _rms(x) * (1 + m[1]) + m[0]).chunk(3, dim=-1)
        qs.append(_rms(_heads(q, heads), w[f"{qn}.weight"], 1e-5))
        ks.append(_rms(_heads(k, heads), w[f"{kn}.weight"], 1e-5))
        vs.append(_heads(v, heads))
    q, k, v = (torch.cat(t, dim=2) for t in (qs, ks, vs))
    attn = F.scaled_dot_product_attention(_rope(q, pos), _rope(k, pos), v)
    attn = attn.transpose(1, 2).flatten(2).split([x.shape[1] for x in xs], dim=1)
    outs = []
    for (qkv, qn, kn, proj, mlp, ada), x, a, m in zip(streams, xs, attn, mods):
        x = x + m[2] * _linear(w, proj, a)
        h = _linear(w, f"{mlp}.fc1", _rms(x) * (1 + m[4]) + m[3])
        outs.append(x + m[5] * _linear(w, f"{mlp}.fc2", F.gelu(h, approximate="tanh")))
    return outs


def _stream(block: str, kind: str, index: str = "") -> tuple[str, ...]:
    """Released names of one stream's (qkv, q norm, k norm, proj, mlp, adaLN) in a block: the motion stream `xs`
    or a condition stream `au` (numbered 1..3 in stage 1, unnumbered in stage 2)."""
    mlp = "xs" if kind == "xs" else "audio"
    attn = f"{block}.attn1"
    return (
        f"{attn}.qkv_{kind}{index}",
        f"{attn}.{kind}_q_norm{index}",
        f"{attn}.{kind}_k_norm{index}",
        f"{attn}.{kind}_proj{index}",
        f"{block}.{mlp}_mlp{index}",
        f"{block}.adaLN_modulation_{mlp}{index}.1",
    )


def _count(w: dict, prefix: str) -> int:
    return len({k.split(".")[1] for k in w if k.startswith(prefix + ".")})


def reference_velocity(w: dict, x_t, t, audio, identity, emotion, prev_motion, heads: int) -> Tensor:
    """The released network's velocity [B, T, 70] for released-layout weights `w`.

    x_t [B, T, 70], t [B] in [0, 1], audio [B, T, A] (a null sample carries the null feature already), identity
    [B, 63], emotion [B], prev_motion [B, 1, 70].
    """
    B, T, _ = x_t.shape
    hidden = w["motion_embedder.mlp.0.weight"].shape[0]
    mlp = lambda name, x: _linear(w, f"{name}.mlp.2", F.silu(_linear(w, f"{name}.mlp.0", x)))  # noqa: E731
    x = mlp("motion_embedder", torch.cat([prev_motion.expand(B, T, -1), x_t], dim=-1))
    a = F.relu(_linear(w, "audio_embedder.proj1", audio))
    a = _rms(_linear(w, "audio_embedder.proj3", F.relu(_linear(w, "audio_embedder.proj2", a))))
    a = a * w["audio_embedder.norm.weight"]
    ident = mlp("identity_embedder", identity[:, None].expand(B, T, -1)).mean(
        1, keepdim=True
    )  # per-frame, averaged
    emo = F.embedding(emotion, w["emo_embedder.embedding_table.weight"])
    half = w["time_embedder.mlp.0.weight"].shape[1] // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half) / half)
    args = 1000.0 * t[:, None] * freqs[None]
    c = mlp("time_embedder", torch.cat([args.cos(), args.sin()], dim=-1)) + emo

    frames = torch.arange(T)
    e, i = emo[:, None].expand(B, T, hidden), ident.expand(B, T, hidden)  # T identical copies each
    pos1 = torch.cat([frames, frames, torch.zeros(2 * T, dtype=torch.long)])  # copies are not rotated
    for n in range(_count(w, "blocks4")):
        streams = [_stream(f"blocks4.{n}", "xs")] + [_stream(f"blocks4.{n}", "au", j) for j in "123"]
        x, a, e, i = _joint_block(w, streams, [x, a, e, i], c, pos1, heads)
    cond = torch.cat([a, e, i], dim=1)
    pos = frames.repeat(4)
    for n in range(_count(w, "blocks2")):
        streams = [_stream(f"blocks2.{n}", "xs"), _stream(f"blocks2.{n}", "au")]
        x, cond = _joint_block(w, streams, [x, cond], c, pos, heads)
    tokens = torch.cat([x, cond], dim=1)
    for n in range(_count(w, "blocks")):
        b = f"blocks.{n}"
        shift, scale, gate = _linear(w, f"{b}.adaLN_modulation_xs.1", F.silu(c))[:, None].chunk(3, dim=-1)
        h = _linear(w, f"{b}.qkv_xs", _rms(tokens) * (1 + scale) + shift)
        qkv, hidden_mlp = h.split([3 * hidden, h.shape[-1] - 3 * hidden], dim=-1)
        q, k, v = (_heads(z, heads) for z in qkv.chunk(3, dim=-1))
        q = _rope(_rms(q, w[f"{b}.attn1.xs_q_norm.weight"], 1e-5), pos)
        k = _rope(_rms(k, w[f"{b}.attn1.xs_k_norm.weight"], 1e-5), pos)
        attn = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).flatten(2)
        out = _linear(w, f"{b}.linear2", torch.cat([attn, F.gelu(hidden_mlp, approximate="tanh")], dim=-1))
        tokens = tokens + gate * out
    shift, scale = _linear(w, "final_layer.adaLN_modulation.1", F.silu(c))[:, None].chunk(2, dim=-1)
    return _linear(w, "final_layer.linear", _rms(tokens[:, :T]) * (1 + scale) + shift)


@torch.no_grad()
def reference_sample(
    w, stats, noise, audio, identity, emotion, prev_motion_real, null_audio, heads, scale=1.2, steps=10
) -> Tensor:
    """Released guided sampling of one window, in real units: prev_motion_real [B, 1, 70] is normalised with
    (x - mean) / (std + 1e-5), the unconditional pass takes `null_audio` [A] and the null emotion, one guidance
    scale for both, Euler steps at linspace(1, 0.001, steps) then to 0, and the result is de-normalised."""
    mean, std = stats["mean"].reshape(1, 1, -1), stats["std"].reshape(1, 1, -1) + 1e-5
    prev = (prev_motion_real - mean) / std
    null_emotion = torch.full_like(emotion, w["emo_embedder.embedding_table.weight"].shape[0] - 1)
    times = torch.cat([torch.linspace(1.0, 0.001, steps), torch.zeros(1)])
    x = noise
    for t_now, t_next in zip(times[:-1], times[1:]):
        t = t_now.expand(len(x))
        v_cond = reference_velocity(w, x, t, audio, identity, emotion, prev, heads)
        v_null = reference_velocity(w, x, t, null_audio.expand_as(audio), identity, null_emotion, prev, heads)
        x = x + (t_next - t_now) * (v_null + scale * (v_cond - v_null))
    return x * std + mean
