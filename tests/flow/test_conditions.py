"""Condition dropout for classifier-free guidance, and null conditions."""

import pytest
import torch

from moda_train.core.motion_layout import NULL_EMOTION
from moda_train.flow import FlowConfig
from moda_train.flow.conditions import drop_conditions, null_conditions, select_conditions
from moda_train.models import ModelConfig


def _batch(n: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "motion": torch.randn(n, 4, 70, generator=g),
        "audio": torch.randn(n, 4, 8, generator=g),
        "identity": torch.randn(n, 63, generator=g),
        "emotion": torch.randint(0, 8, (n,), generator=g),
        "prev_motion": torch.randn(n, 1, 70, generator=g) + 5.0,  # never exactly zero
    }


def test_null_emotion_default_matches_the_layout_and_the_model():
    assert FlowConfig().null_emotion == NULL_EMOTION == ModelConfig().num_emotions


def test_dropout_frequencies_and_null_values():
    batch = _batch(20_000)
    cfg = FlowConfig(drop_audio=0.2, drop_emotion=0.1, drop_prev_motion=0.3)
    cond = drop_conditions(batch, cfg, torch.Generator().manual_seed(1))
    assert set(cond) == {"audio", "identity", "emotion", "prev_motion", "audio_null"}
    emotion_dropped = cond["emotion"] == NULL_EMOTION
    prev_dropped = (cond["prev_motion"] == 0).all(dim=(1, 2))
    assert abs(cond["audio_null"].float().mean().item() - 0.2) < 0.01
    assert abs(emotion_dropped.float().mean().item() - 0.1) < 0.01
    assert abs(prev_dropped.float().mean().item() - 0.3) < 0.01
    # the three drops are independent draws
    both = (cond["audio_null"] & emotion_dropped).float().mean().item()
    assert abs(both - 0.02) < 0.005
    # kept values are untouched, identity is never dropped, the input batch is not modified
    kept = ~emotion_dropped
    assert torch.equal(cond["emotion"][kept], batch["emotion"][kept])
    assert torch.equal(cond["identity"], batch["identity"])
    assert (batch["prev_motion"] != 0).all()


@pytest.mark.parametrize("p", [0.0, 1.0])
def test_dropout_extremes(p):
    batch = _batch(64)
    cond = drop_conditions(batch, FlowConfig(drop_audio=p, drop_emotion=p, drop_prev_motion=p))
    assert cond["audio_null"].all() == bool(p) and cond["audio_null"].any() == bool(p)
    assert ((cond["emotion"] == NULL_EMOTION).all()) == bool(p)
    assert ((cond["prev_motion"] == 0).all()) == bool(p)


def test_dropout_is_reproducible_with_a_generator():
    batch, cfg = _batch(32), FlowConfig(drop_audio=0.5, drop_emotion=0.5)
    a = drop_conditions(batch, cfg, torch.Generator().manual_seed(7))
    b = drop_conditions(batch, cfg, torch.Generator().manual_seed(7))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_null_conditions_and_missing_keys():
    batch = _batch(3)
    both = null_conditions(batch, null_audio=True, null_emotion=True, null_emotion_id=8)
    assert both["audio_null"].all() and (both["emotion"] == 8).all()
    audio_only = null_conditions(batch, null_audio=False, null_emotion=True, null_emotion_id=8)
    assert not audio_only["audio_null"].any()
    with pytest.raises(KeyError, match="lacks identity"):
        select_conditions({k: v for k, v in batch.items() if k != "identity"})
