"""RoPE and the joint attention function."""

import math

import pytest
import torch

from moda_train.models.attention import apply_rope, attention, copies_bias, rope_frequencies


def _rotate(x: torch.Tensor, position: int, theta: float = 256.0) -> torch.Tensor:
    freqs = rope_frequencies(torch.tensor([position]), x.shape[-1], theta)
    return apply_rope(x.reshape(1, 1, 1, -1), freqs).reshape(-1)


def test_rope_scores_depend_only_on_the_relative_position():
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(64, generator=g), torch.randn(64, generator=g)
    reference = _rotate(q, 7) @ _rotate(k, 3)
    for shift in (-3, 1, 40, 1000):
        torch.testing.assert_close(_rotate(q, 7 + shift) @ _rotate(k, 3 + shift), reference, rtol=1e-4, atol=1e-4)
    assert not torch.isclose(_rotate(q, 8) @ _rotate(k, 3), reference)  # a different offset scores differently


def test_rope_is_a_rotation_and_position_zero_is_the_identity():
    x = torch.randn(2, 5, 3, 64)
    freqs = rope_frequencies(torch.arange(5), 64, 256.0)
    torch.testing.assert_close(apply_rope(x, freqs).norm(dim=-1), x.norm(dim=-1))
    torch.testing.assert_close(apply_rope(x, rope_frequencies(torch.zeros(5, dtype=torch.long), 64, 256.0)), x)


def test_rope_rotates_adjacent_channel_pairs_at_the_documented_frequencies():
    x = torch.zeros(1, 1, 1, 8)
    x[..., 2] = 1.0  # pair 1 (channels 2, 3), frequency 256 ** (-2 / 8)
    freqs = rope_frequencies(torch.tensor([3]), 8, 256.0)
    angle = 3 * 256.0 ** (-2 / 8)
    expected = torch.zeros(8)
    expected[2], expected[3] = math.cos(angle), math.sin(angle)
    torch.testing.assert_close(apply_rope(x, freqs).reshape(-1), expected)


def test_rope_needs_an_even_head_dim():
    with pytest.raises(ValueError, match="even head dimension"):
        rope_frequencies(torch.arange(3), 7, 256.0)


def test_attention_matches_the_explicit_softmax():
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(2, 6, 3, 8, generator=g) for _ in range(3))  # [B, L, H, D]
    freqs = rope_frequencies(torch.arange(6), 8, 256.0)
    bias = copies_bias([4, 2], [1, 5])
    out = attention(q, k, v, freqs, bias)
    qr, kr = apply_rope(q, freqs).transpose(1, 2), apply_rope(k, freqs).transpose(1, 2)
    weights = torch.softmax(qr @ kr.transpose(-1, -2) / math.sqrt(8) + bias, dim=-1)
    expected = (weights @ v.transpose(1, 2)).transpose(1, 2).reshape(2, 6, 24)
    torch.testing.assert_close(out, expected)
    assert copies_bias([3, 1], [1, 1]) is None


@pytest.mark.parametrize("affine", [False, True])
def test_cpu_rms_norm_matches_torch_in_value_and_gradient(affine):
    from moda_train.models.layers import rms_norm

    g = torch.Generator().manual_seed(2)
    x = torch.randn(3, 5, 16, generator=g, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(16, generator=g, dtype=torch.float64, requires_grad=True) if affine else None
    dy = torch.randn(3, 5, 16, generator=g, dtype=torch.float64)
    ours = rms_norm(x, weight, 1e-6)
    theirs = torch.nn.functional.rms_norm(x, (16,), weight, 1e-6)
    torch.testing.assert_close(ours, theirs)
    inputs = (x, weight) if affine else (x,)
    for a, b in zip(torch.autograd.grad(ours, inputs, dy), torch.autograd.grad(theirs, inputs, dy), strict=True):
        torch.testing.assert_close(a, b)
