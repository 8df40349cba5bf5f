"""LatentSpace: the identity for raw motion; for a VAE, a frozen encode/decode pair with standardised latents,
loaded from a VAE training checkpoint, with clear errors for the wrong file."""

import pytest
import torch

from moda_train.core.motion_layout import LIP_DIMS
from moda_train.lit.vae_module import MotionVAELightningModule
from moda_train.models.latent_space import LatentMoments, LatentSpace, compute_latent_stats
from moda_train.models.motion_vae import MotionVAE
from moda_train.models.vae_config import VAEConfig

from .vae_helpers import overfit_vae, smooth_windows


@pytest.fixture(scope="module")
def overfitted():
    """Four smooth windows and a tiny VAE (4x downsampling) overfitted to them."""
    windows = smooth_windows(4, 80, seed=1)
    return windows, overfit_vae(windows, steps=150)


def test_raw_space_is_the_identity():
    space = LatentSpace.raw()
    motion = torch.randn(2, 80, 70)
    assert (space.latent_dim, space.downsample, space.is_raw, space.has_stats) == (70, 1, True, True)
    assert space.encode(motion) is motion and space.decode(motion) is motion
    assert space.encode_prev(motion[:, :1]) is not None and space.encode_prev(motion[:, :1]).shape == (2, 1, 70)
    assert space.latent_frames(80) == 80 and space.prev_latent_frames(1) == 1
    assert list(space.state_dict()) == []  # nothing to save in raw mode


def test_encode_decode_round_trip_with_measured_stats(overfitted):
    windows, vae = overfitted
    space = LatentSpace(vae)
    batches = [{"motion": windows[:2]}, {"motion": windows[2:]}]
    space.set_stats(*compute_latent_stats(vae, batches, max_batches=10))
    latent = space.encode(windows)
    assert latent.shape == (4, 20, 16)
    # standardised: zero mean and unit spread per channel over the data the stats came from
    flat = latent.reshape(-1, 16)
    torch.testing.assert_close(flat.mean(0), torch.zeros(16), atol=1e-4, rtol=0)
    torch.testing.assert_close(flat.std(0, unbiased=False), torch.ones(16), atol=1e-4, rtol=0)
    recon = space.decode(latent)
    assert recon.shape == windows.shape
    assert (recon - windows).square().mean() < 0.05
    assert (recon - windows)[..., list(LIP_DIMS)].square().mean().sqrt() < 0.25
    assert not any(p.requires_grad for p in space.parameters())  # frozen
    holder = torch.nn.ModuleDict({"space": space}).train()  # as the MMDiT module is put in training mode
    assert holder.training and not space.vae.training


def test_compute_latent_stats_stops_at_max_batches(overfitted):
    windows, vae = overfitted
    batches = [{"motion": windows[:2]}, {"motion": windows[2:] * 5.0}]
    first_only = compute_latent_stats(vae, batches, max_batches=1)
    both = compute_latent_stats(vae, batches, max_batches=2)
    assert not torch.allclose(first_only[1], both[1])
    with torch.no_grad():
        reference = vae.encode(windows[:2])[0].reshape(-1, 16)
    torch.testing.assert_close(first_only[0], reference.mean(0), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="max_batches=0"):
        compute_latent_stats(vae, batches, max_batches=0)
    with pytest.raises(ValueError, match="no \\(or too little\\) data"):
        compute_latent_stats(vae, [], max_batches=3)


def test_moments_sum_like_one_pass():
    data = torch.randn(3, 7, 5, dtype=torch.float64)
    moments = LatentMoments(5)
    for part in data:
        moments.update(part)
    mean, std, count = moments.compute()
    torch.testing.assert_close(mean, data.reshape(-1, 5).mean(0).float())
    torch.testing.assert_close(std, data.reshape(-1, 5).std(0, unbiased=False).float())
    assert count == 21


@pytest.mark.parametrize("prev_frames, expected", [(1, 1), (4, 1), (5, 2), (0, 0)])
def test_previous_motion_condition_shapes(overfitted, prev_frames, expected):
    windows, vae = overfitted
    space = LatentSpace(vae)
    space.set_stats(torch.zeros(16), torch.ones(16))
    prev = space.encode_prev(windows[:2, :prev_frames])
    assert prev.shape == (2, expected, 16) and space.prev_latent_frames(prev_frames) == expected


def test_one_previous_frame_is_encoded_as_a_held_pose(overfitted):
    windows, vae = overfitted
    space = LatentSpace(vae)
    space.set_stats(torch.zeros(16), torch.ones(16))
    frame = windows[:2, 79:80]
    torch.testing.assert_close(space.encode_prev(frame), space.encode(frame.expand(-1, 4, -1)))


def test_per_frame_conditions_stack_onto_latent_frames():
    space = LatentSpace(MotionVAE(VAEConfig(hidden_size=64, latent_dim=16, downsample=4)))
    audio = torch.arange(2 * 8 * 3, dtype=torch.float32).reshape(2, 8, 3)
    stacked = space.stack_frames(audio)
    assert stacked.shape == (2, 2, space.stacked_dim(3)) == (2, 2, 12)
    torch.testing.assert_close(stacked[:, 1], audio[:, 4:8].reshape(2, 12))  # frames 4..7 side by side
    assert LatentSpace.raw().stack_frames(audio).shape == audio.shape
    with pytest.raises(ValueError, match="9 frames is not a multiple"):
        space.stack_frames(torch.zeros(2, 9, 3))


def test_decoding_passes_gradients_to_the_latent_but_not_to_the_frozen_vae(overfitted):
    _, vae = overfitted
    space = LatentSpace(vae)
    space.set_stats(torch.zeros(16), torch.ones(16))
    latent = torch.zeros(1, 20, 16, requires_grad=True)
    space.decode(latent).square().sum().backward()
    assert latent.grad is not None and latent.grad.abs().sum() > 0
    assert all(p.grad is None for p in space.parameters())


def test_latent_frames_names_a_bad_window():
    space = LatentSpace(MotionVAE(VAEConfig(hidden_size=64, latent_dim=16)))
    assert space.latent_frames(80) == 20
    with pytest.raises(ValueError, match="81 frames is not a multiple of the VAE's downsampling 4"):
        space.latent_frames(81)


def test_missing_latent_stats_are_reported_not_guessed():
    space = LatentSpace(MotionVAE(VAEConfig(hidden_size=64, latent_dim=16)))
    assert not space.has_stats
    with pytest.raises(RuntimeError, match="no latent statistics.*compute_latent_stats"):
        space.encode(torch.zeros(1, 8, 70))
    with pytest.raises(ValueError, match=r"latent stats must be \[16\]"):
        space.set_stats(torch.zeros(8), torch.ones(8))


@pytest.mark.slow
def test_from_checkpoint_matches_the_trained_modules_ema(checkpoint):
    space = LatentSpace.from_checkpoint(checkpoint)
    module = MotionVAELightningModule.load_from_checkpoint(checkpoint, map_location="cpu")
    assert (space.latent_dim, space.downsample, space.has_stats) == (16, 2, True)
    torch.testing.assert_close(space.latent_std, module.latent_std)
    motion = smooth_windows(2, 80)
    with torch.no_grad():
        mean = module.ema.encode(motion)[0]
        expected_latent = (mean - module.latent_mean) / module.latent_std
        expected_motion = module.ema.decode(mean)
    torch.testing.assert_close(space.encode(motion), expected_latent)
    torch.testing.assert_close(space.decode(space.encode(motion)), expected_motion, atol=1e-5, rtol=1e-5)
    space.check_motion_stats(module.motion_mean, module.motion_std)
    with pytest.raises(ValueError, match="different motion statistics"):
        space.check_motion_stats(module.motion_mean + 1.0, module.motion_std)


def test_from_checkpoint_names_the_wrong_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="VAE checkpoint not found at .*nothing.ckpt"):
        LatentSpace.from_checkpoint(tmp_path / "nothing.ckpt")
    with pytest.raises(ValueError, match="sharded DeepSpeed checkpoint folder.*moda_train.consolidate"):
        LatentSpace.from_checkpoint(tmp_path)
    other = tmp_path / "mmdit.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"config": {"task": "mmdit"}}}, other)
    with pytest.raises(ValueError, match="not a motion VAE checkpoint \\(task='mmdit'"):
        LatentSpace.from_checkpoint(other)
