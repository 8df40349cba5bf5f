"""The VAE network and its loss: shapes for every downsampling factor, clear errors, KL and reconstruction terms,
and a tiny VAE that overfits a few windows on CPU."""

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from moda_train.core.motion_layout import LIP_DIMS
from moda_train.lit.vae_module import vae_loss
from moda_train.models.motion_vae import MotionVAE, kl_to_standard_normal, reparameterize
from moda_train.models.vae_config import VAEConfig

from .vae_helpers import TINY, overfit_vae, smooth_windows


@pytest.mark.parametrize("factor", [1, 2, 4])
@pytest.mark.parametrize("frames", [4, 16, 80, 84])
def test_shapes_for_every_factor_and_window_length(factor, frames):
    torch.manual_seed(0)
    model = MotionVAE(VAEConfig(**TINY, downsample=factor))
    motion = torch.randn(3, frames, 70)
    mean, logvar = model.encode(motion)
    assert mean.shape == logvar.shape == (3, frames // factor, 16)
    assert model.decode(mean).shape == (3, frames, 70)
    recon, _, _ = model(motion, torch.Generator().manual_seed(0))
    assert recon.shape == motion.shape
    assert model.embed(motion).shape == (3, 32)


@pytest.mark.parametrize(
    "shape, pattern",
    [
        ((2, 81, 70), "window of 81 frames.*multiple of 4"),
        ((2, 0, 70), "window of 0 frames.*positive multiple of 4"),
        ((2, 80, 69), r"motion must be \[B, T, 70\], got \[2, 80, 69\]"),
        ((80, 70), r"motion must be \[B, T, 70\], got \[80, 70\]"),
    ],
)
def test_bad_windows_are_named(shape, pattern):
    model = MotionVAE(VAEConfig(**TINY, downsample=4))
    with pytest.raises(ValueError, match=pattern):
        model.encode(torch.zeros(shape))


def test_bad_latent_width_is_named():
    model = MotionVAE(VAEConfig(**TINY))
    with pytest.raises(ValueError, match=r"latent must be \[B, T', 16\], got \[2, 20, 8\]"):
        model.decode(torch.zeros(2, 20, 8))


def test_config_checks_are_collected_and_named():
    with pytest.raises(ValueError, match=r"vae\.downsample=3.*vae\.kl_weight must be >= 0"):
        VAEConfig(downsample=3, kl_weight=-1.0)
    with pytest.raises(ValueError, match=r"vae\.hidden_size=60 must be a multiple of 8"):
        VAEConfig(hidden_size=60)


def test_kl_matches_torch_distributions_and_is_zero_only_at_the_prior():
    mean = torch.tensor([0.0, 1.5, -0.3, 0.0])
    logvar = torch.tensor([0.0, 0.0, 0.7, -2.0])
    expected = kl_divergence(Normal(mean, (0.5 * logvar).exp()), Normal(0.0, 1.0))
    got = kl_to_standard_normal(mean, logvar)
    torch.testing.assert_close(got, expected)
    assert got[0] == 0 and (got[1:] > 0).all()


def test_reparameterize_is_seeded_and_has_the_posterior_spread():
    mean, logvar = torch.full((20000,), 2.0), torch.full((20000,), -1.0)
    first = reparameterize(mean, logvar, torch.Generator().manual_seed(5))
    torch.testing.assert_close(first, reparameterize(mean, logvar, torch.Generator().manual_seed(5)))
    assert abs(first.mean().item() - 2.0) < 0.02
    assert abs(first.std().item() - torch.tensor(-0.5).exp().item()) < 0.02


def test_kl_annealing_is_linear_then_flat():
    cfg = VAEConfig(kl_weight=0.01, kl_warmup_steps=100)
    assert [cfg.kl_weight_at(step) for step in (0, 50, 100, 500)] == pytest.approx([0.0, 0.005, 0.01, 0.01])
    assert VAEConfig(kl_weight=0.01).kl_weight_at(0) == 0.01


def _terms(cfg, motion, kl_weight=None, seed=0):
    torch.manual_seed(0)
    model = MotionVAE(cfg)
    weights = torch.ones(70)
    weights[list(LIP_DIMS)] = cfg.lip_weight
    kl_weight = cfg.kl_weight if kl_weight is None else kl_weight
    return vae_loss(model, motion, cfg, weights, kl_weight, torch.Generator().manual_seed(seed))


def test_loss_is_the_weighted_sum_of_its_terms():
    motion = smooth_windows(2, 16)
    cfg = VAEConfig(**TINY, velocity_weight=0.5, kl_weight=0.1)
    terms = _terms(cfg, motion)
    expected = terms["recon"] + 0.5 * terms["velocity"] + 0.1 * terms["kl"]
    torch.testing.assert_close(terms["loss"], expected)
    assert all(torch.isfinite(value) for value in terms.values())


def test_lip_weight_adds_exactly_the_lip_error():
    motion = smooth_windows(2, 16)
    plain = _terms(VAEConfig(**TINY, lip_weight=1.0), motion)
    weighted = _terms(VAEConfig(**TINY, lip_weight=4.0), motion)
    torch.testing.assert_close(plain["recon"], plain["mse"])
    # same model and noise, so the reconstruction is identical; only the lip dims count 3 more times
    torch.manual_seed(0)
    recon, _, _ = MotionVAE(VAEConfig(**TINY))(motion, torch.Generator().manual_seed(0))
    lip_error = (recon - motion)[..., list(LIP_DIMS)].square().sum(-1).mean() / 70
    torch.testing.assert_close(weighted["recon"], plain["recon"] + 3.0 * lip_error)


def test_velocity_term_is_the_error_of_frame_to_frame_changes():
    motion = smooth_windows(2, 16)
    terms = _terms(VAEConfig(**TINY), motion)
    torch.manual_seed(0)
    recon, _, _ = MotionVAE(VAEConfig(**TINY))(motion, torch.Generator().manual_seed(0))
    expected = (recon.diff(dim=1) - motion.diff(dim=1)).square().mean()
    torch.testing.assert_close(terms["velocity"], expected)
    single = _terms(VAEConfig(**TINY, downsample=1), motion[:, :1])
    assert single["velocity"] == 0  # one frame has no change to compare


def test_free_bits_remove_the_kl_gradient_below_the_floor():
    motion = smooth_windows(2, 16)
    cfg = VAEConfig(**TINY, kl_free_bits=1000.0, velocity_weight=0.0)
    terms = _terms(cfg, motion, kl_weight=0.5)
    # every channel sits under the floor: the KL part of the loss is the constant weight x floor
    torch.testing.assert_close(terms["loss"] - terms["recon"], torch.tensor(0.5 * 1000.0))
    assert 0 < terms["kl"] < 1000.0  # the logged KL is still the real one


def test_tiny_vae_overfits_a_few_windows_quickly():
    windows = smooth_windows(4, 80)
    model = overfit_vae(windows, steps=150)
    with torch.no_grad():
        recon = model.decode(model.encode(windows)[0])
    error = (recon - windows).square().mean()
    lip_rmse = (recon - windows)[..., list(LIP_DIMS)].square().mean().sqrt()
    assert error < 0.05  # from about 1.0 (unit-variance data) at initialisation
    assert lip_rmse < 0.25  # well below the data's own std of 1


def test_embedding_is_deterministic_and_separates_still_from_moving_windows():
    torch.manual_seed(0)
    model = MotionVAE(VAEConfig(**TINY))
    moving = smooth_windows(2, 80)
    still = moving[:, :1].expand(-1, 80, -1)
    torch.testing.assert_close(model.embed(moving), model.embed(moving))
    spread = slice(16, 32)  # second half of the embedding: temporal spread of the posterior means
    assert (model.embed(moving)[:, spread].mean() > 2 * model.embed(still)[:, spread].mean()).item()
