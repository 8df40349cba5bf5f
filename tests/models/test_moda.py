"""The MoDA MMDiT: shapes, the released parameter count, adaLN-Zero identity at init, conditions, save/load."""

import io

import pytest
import torch

from moda_train.models import MoDA, ModelConfig, count_parameters
from moda_train.models.attention import copies_bias, rope_frequencies
from moda_train.models.layers import MultiStreamBlock, SingleStreamBlock
from tests.tiny_moda import TINY, tiny_inputs, tiny_model

# The released MoDA-B checkpoint (net-200.pth): 408 tensors, 372,983,878 parameters.
MODA_B_PARAMETERS = 372_983_878
MODA_B_TENSORS = 408


def test_moda_b_matches_the_released_parameter_count():
    with torch.device("meta"):
        model = MoDA(ModelConfig())
    assert sum(p.numel() for p in model.parameters()) == MODA_B_PARAMETERS
    assert len(list(model.parameters())) == MODA_B_TENSORS
    assert count_parameters(ModelConfig()) == MODA_B_PARAMETERS


@pytest.mark.parametrize(
    "overrides",
    [{}, {"prev_motion_frames": 3}, {"prev_motion_frames": 0}, {"depth_four_stream": 0, "depth_two_stream": 0}],
    ids=["default", "three-prev-frames", "no-prev-frames", "single-stream-only"],
)
def test_output_shape(overrides):
    model = tiny_model(**overrides)
    inputs = tiny_inputs(model, batch=3, frames=7)
    out = model(**inputs)
    assert out.shape == (3, 7, TINY["motion_dim"])
    assert torch.isfinite(out).all()


def test_every_block_is_the_identity_at_init():
    model = tiny_model(perturb=False)
    inputs = tiny_inputs(model, batch=2, frames=5)
    B, T, H = 2, 5, model.config.hidden_size
    c = torch.randn(B, H)
    freqs = model._rope(torch.arange(4 * T) % T)
    for block in model.modules():
        if isinstance(block, MultiStreamBlock):
            xs = [torch.randn(B, n, H) for n in ([T, T, T, T] if len(block.streams) == 4 else [T, 3 * T])]
            for x, y in zip(xs, block(xs, c, freqs), strict=True):
                torch.testing.assert_close(y, x, rtol=0, atol=0)
        elif isinstance(block, SingleStreamBlock):
            x = torch.randn(B, 4 * T, H)
            torch.testing.assert_close(block(x, c, freqs), x, rtol=0, atol=0)
    assert not model(**inputs).any()  # zero final projection: v = 0 before any training


def test_one_condition_token_equals_its_materialised_copies():
    """Stage 1 keeps one emotion and one identity token with a log(T) key bias instead of T identical copies."""

    torch.manual_seed(0)
    T, H = 6, 32
    block = MultiStreamBlock(H, 4, 4.0, True, num_streams=4)
    for p in block.parameters():
        torch.nn.init.normal_(p, std=0.2)
    x, a, e, i = torch.randn(2, T, H), torch.randn(2, T, H), torch.randn(2, 1, H), torch.randn(2, 1, H)
    c = torch.randn(2, H)
    frames = torch.arange(T)
    freqs = rope_frequencies(torch.cat([frames, frames, torch.zeros(2 * T, dtype=torch.long)]), 8, 256.0)
    full = block([x, a, e.expand(2, T, H), i.expand(2, T, H)], c, freqs)
    freqs1 = rope_frequencies(torch.cat([frames, frames, torch.zeros(2, dtype=torch.long)]), 8, 256.0)
    short = block([x, a, e, i], c, freqs1, copies_bias([2 * T, 2], [1, T]))
    torch.testing.assert_close(short[0], full[0])
    torch.testing.assert_close(short[1], full[1])
    torch.testing.assert_close(short[2].expand(2, T, H), full[2])
    torch.testing.assert_close(short[3].expand(2, T, H), full[3])


@pytest.mark.parametrize("condition", ["audio_null", "emotion_null", "prev_motion", "identity", "audio", "t"])
def test_each_condition_changes_the_output_of_its_own_sample_only(condition):
    model = tiny_model()
    inputs = tiny_inputs(model, batch=3, frames=5)
    base = model(**inputs)
    changed = dict(inputs)
    if condition == "audio_null":
        changed["audio_null"] = torch.tensor([False, True, False])
    elif condition == "emotion_null":
        changed["emotion"] = inputs["emotion"].clone()
        changed["emotion"][1] = model.null_emotion
    elif condition == "t":
        changed["t"] = inputs["t"].clone()
        changed["t"][1] += 0.3
    else:
        changed[condition] = inputs[condition].clone()
        changed[condition][1] = 0.0
    out = model(**changed)
    assert (out[1] - base[1]).abs().max() > 1e-4
    torch.testing.assert_close(out[[0, 2]], base[[0, 2]])


def test_null_audio_is_the_zero_feature():
    model = tiny_model()
    inputs = tiny_inputs(model, batch=2, frames=5)
    nulled = model(**inputs, audio_null=torch.tensor([True, True]))
    zeroed = model(**{**inputs, "audio": torch.zeros_like(inputs["audio"])})
    torch.testing.assert_close(nulled, zeroed)


def test_every_parameter_receives_a_gradient():
    model = tiny_model()
    model(**tiny_inputs(model)).square().mean().backward()
    dead = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert not dead


def test_save_load_round_trip_gives_identical_outputs():
    model = tiny_model(seed=3)
    inputs = tiny_inputs(model)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    clone = tiny_model(seed=99)
    clone.load_state_dict(torch.load(buffer, weights_only=True))
    assert torch.equal(clone(**inputs), model(**inputs))


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("audio", torch.zeros(3, 7, 5), r"audio must have shape \[3, 7, 24\]"),
        ("identity", torch.zeros(3, 63), r"identity must have shape \[3, 6\]"),
        ("prev_motion", torch.zeros(3, 2, 10), r"prev_motion must have shape \[3, 1, 10\]"),
        ("t", torch.zeros(4), r"t must have shape \[3\]"),
        ("emotion", torch.tensor([0, 9, 1]), r"emotion must be int64 class ids in 0..8"),
        ("emotion", torch.tensor([0.0, 1.0, 1.0]), r"emotion must be int64"),
        ("x_t", torch.zeros(3, 7, 70), r"x_t must be \[B, T, 10\]"),
    ],
)
def test_bad_inputs_are_named(name, value, message):
    model = tiny_model(perturb=False)
    inputs = tiny_inputs(model)
    inputs[name] = value
    with pytest.raises(ValueError, match=message):
        model(**inputs)


def test_bad_audio_null_is_named():
    model = tiny_model(perturb=False)
    with pytest.raises(ValueError, match="audio_null must be a bool"):
        model(**tiny_inputs(model), audio_null=torch.zeros(3))


def test_config_checks_collect_every_problem():
    with pytest.raises(ValueError, match="not divisible by num_heads=3.*audio_dim must be >= 1"):
        ModelConfig(hidden_size=64, num_heads=3, audio_dim=0)
