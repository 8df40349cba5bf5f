"""The expert's building blocks: window locality, embedding range, the BCE objective, accuracy, offset search."""

import pytest
import torch
from omegaconf import OmegaConf

from moda_train.core.config_loader import CONFIGS_ROOT, ConfigError
from moda_train.core.motion_layout import LIP_DIMS
from moda_train.core.sync_offsets import sync_from_embeddings
from moda_train.experiment import ALSEExperiment, load_experiment
from moda_train.lit.alse_module import ALSELightningModule
from moda_train.models.alse import ALSE, shift_similarities, sync_accuracy, sync_loss
from moda_train.models.alse_config import ALSEConfig

TINY_ALSE = CONFIGS_ROOT / "experiments" / "alse_tiny_cpu.yaml"
CFG = ALSEConfig(audio_dim=12, hidden_size=16, embed_dim=8, window_frames=5, min_shift=2, max_shift=4)


def _expert(seed: int = 0) -> ALSE:
    torch.manual_seed(seed)
    return ALSE(CFG).eval()


def test_one_embedding_per_window_non_negative_unit_norm():
    expert = _expert()
    motion, audio = torch.randn(3, 20, 70), torch.randn(3, 20, 12)
    lips, sound = expert.embed_lips(motion), expert.embed_audio(audio)
    assert lips.shape == sound.shape == (3, 16, 8)  # N = T - K + 1
    for emb in (lips, sound):
        assert (emb >= 0).all()
        norms = emb.norm(dim=-1)
        assert torch.allclose(norms[norms > 0], torch.ones_like(norms[norms > 0]), atol=1e-5)
    cos = expert(motion, audio)
    assert cos.shape == (3, 16) and (cos >= 0).all() and (cos <= 1 + 1e-6).all()


def test_a_window_sees_exactly_its_frames_and_only_lip_dims():
    expert = _expert()
    motion = torch.randn(1, 20, 70)
    before = expert.embed_lips(motion)
    changed = motion.clone()
    changed[0, 10, LIP_DIMS[0]] += 5.0  # frame 10 lies in windows 6..10 only
    changed[0, :, 0] += 5.0  # dimension 0 is not a lip dimension
    after = expert.embed_lips(changed)
    moved = (after - before).abs().amax(-1)[0] > 1e-6
    assert moved.nonzero().flatten().tolist() == [6, 7, 8, 9, 10]


def test_bad_inputs_name_the_problem():
    expert = _expert()
    with pytest.raises(ValueError, match=r"motion must be \[B, T, 70\]"):
        expert(torch.randn(2, 20, 63), torch.randn(2, 20, 12))
    with pytest.raises(ValueError, match=r"alse.audio_dim=12"):
        expert(torch.randn(2, 20, 70), torch.randn(2, 20, 320))
    with pytest.raises(ValueError, match="differ in"):
        expert(torch.randn(2, 20, 70), torch.randn(2, 19, 12))
    with pytest.raises(ValueError, match="shorter than one window"):
        expert(torch.randn(2, 3, 70), torch.randn(2, 3, 12))


def test_config_checks_are_collected():
    with pytest.raises(ValueError, match="min_shift=5.*max_shift=3.*vshift"):
        ALSEConfig(min_shift=5, max_shift=3, vshift=0)
    with pytest.raises(ConfigError, match="alse.window_frames must be >= 1"):
        load_experiment(TINY_ALSE, ["alse.window_frames=0"])


def test_tiny_experiment_yaml_is_an_alse_experiment():
    typed, _ = load_experiment(TINY_ALSE)
    assert isinstance(typed, ALSEExperiment)
    assert typed.alse.audio_dim == 320 and typed.alse.hidden_size == 64  # configs/alse/tiny.yaml
    assert typed.data.window_frames >= typed.alse.min_frames()


def _one_hot_windows(positions: torch.Tensor, dim: int = 64) -> torch.Tensor:
    return torch.nn.functional.one_hot(positions % dim, dim).float()


def test_bce_is_low_for_a_perfect_expert_and_high_for_a_blind_one():
    # A perfect expert: each (clip, window) has its own one-hot code, shared by its lips and its audio.
    codes = _one_hot_windows(torch.arange(64)).reshape(4, 16, 64)
    perfect = sync_loss(codes, codes, CFG)
    assert perfect["cos_positive"] > 0.99 and perfect["cos_negative"] < 0.01
    assert perfect["loss"] < 1e-4
    blind = torch.ones(4, 16, 64) / 8.0  # the same embedding everywhere: cannot tell shifts apart
    assert sync_loss(blind, blind, CFG)["loss"] > 5.0


def test_loss_refuses_windows_too_short_for_any_negative():
    single = ALSEConfig(
        audio_dim=12, hidden_size=16, embed_dim=8, min_shift=2, max_shift=4, other_clip_negatives=False
    )
    emb = torch.rand(1, 2, 8)
    with pytest.raises(ValueError, match="data.window_frames >= 13"):
        sync_loss(emb, emb, single)


def test_accuracy_counts_the_aligned_candidate_and_has_a_chance_level():
    codes = _one_hot_windows(torch.arange(20))[None]
    assert sync_accuracy(codes, codes, CFG) == 1.0
    shifted = _one_hot_windows(torch.arange(20) - 3)[None]  # audio window j carries lip code j - 3
    assert sync_accuracy(codes, shifted, CFG) == 0.0
    torch.manual_seed(0)
    chance = 1 / (1 + 2 * (CFG.max_shift - CFG.min_shift + 1))
    random = sync_accuracy(torch.rand(64, 40, 8), torch.rand(64, 40, 8), CFG)
    assert abs(random - chance) < 0.05


def test_shift_similarities_pair_window_i_with_audio_window_j():
    lips, audio = torch.rand(2, 6, 4), torch.rand(2, 6, 4)
    cos = shift_similarities(lips, audio)
    assert torch.allclose(cos[1, 2, 5], (lips[1, 2] * audio[1, 5]).sum())


@pytest.mark.parametrize("delay", [0, 3, -5])
def test_offset_search_finds_a_known_delay(delay):
    # Lip window i carries code i; audio window j carries code j - delay (audio delayed by `delay` frames), so
    # lip window i matches audio window i + delay: the mouth leads, the offset is -delay.
    video = _one_hot_windows(torch.arange(40))
    audio = _one_hot_windows(torch.arange(40) - delay)
    result = sync_from_embeddings(video, audio, vshift=15)
    assert result.offset == -delay
    assert len(result.mdist) == 31 and result.windows == 40
    assert result.sync_d == pytest.approx(min(result.mdist))
    assert result.sync_c > 0.5


def test_offset_search_rejects_mismatched_embeddings():
    with pytest.raises(ValueError, match="equal shape"):
        sync_from_embeddings(torch.rand(5, 4), torch.rand(6, 4))


def test_short_training_windows_are_refused_before_training():

    _, tree = load_experiment(TINY_ALSE, ["data.window_frames=20", "data.train_shards=x"])
    with pytest.raises(ValueError, match=r"data.window_frames=20 is too short for ALSE: need >= 35"):
        ALSELightningModule(OmegaConf.to_container(tree, resolve=True))
