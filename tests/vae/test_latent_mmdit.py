"""The pieces the MMDiT module composes for `motion_space: vae`: a real MoDA trains on VAE latents (with the
previous-motion and audio conditions moved onto latent frames) and its samples decode to [T, 70] motion in real
units."""

import torch

from moda_train.core.stats import MotionStats
from moda_train.flow.config import FlowConfig
from moda_train.flow.loss import flow_loss
from moda_train.flow.sampler import sample
from moda_train.models import MoDA, ModelConfig
from moda_train.models.latent_space import LatentSpace, compute_latent_stats
from moda_train.models.motion_vae import MotionVAE
from moda_train.models.vae_config import VAEConfig

from .vae_helpers import TINY, smooth_windows

FRAMES, AUDIO_DIM = 80, 12


def test_mmdit_trains_in_latent_space_and_samples_real_motion():
    torch.manual_seed(0)
    space = LatentSpace(MotionVAE(VAEConfig(**TINY, downsample=2)))
    windows = smooth_windows(5, FRAMES + 1, seed=2)  # frame 0 is the previous frame of each window
    motion, prev = windows[:, 1:], windows[:, :1]
    space.set_stats(*compute_latent_stats(space.vae, [{"motion": motion}], max_batches=1))
    stats = MotionStats.from_arrays(torch.linspace(-1, 1, 70).numpy(), torch.linspace(0.5, 2, 70).numpy())

    model = MoDA(
        ModelConfig(
            hidden_size=32,
            num_heads=4,
            depth_four_stream=1,
            depth_two_stream=1,
            depth_single_stream=1,
            motion_dim=space.latent_dim,
            prev_motion_frames=space.prev_latent_frames(1),
            audio_dim=space.stacked_dim(AUDIO_DIM),
        )
    )
    generator = torch.Generator().manual_seed(3)
    cond = {
        "audio": space.stack_frames(torch.randn(5, FRAMES, AUDIO_DIM, generator=generator)),
        "identity": torch.randn(5, 63, generator=generator),
        "emotion": torch.arange(5),
        "prev_motion": space.encode_prev(prev),
    }
    x0 = space.encode(motion)
    assert x0.shape == (5, 40, 16) and cond["prev_motion"].shape == (5, 1, 16)

    flow = FlowConfig(drop_audio=0.0, drop_emotion=0.0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for step in range(30):
        # the same t and noise every step, so the losses are comparable: the model must fit this batch
        terms = flow_loss(model, x0, cond, flow, groups=None, generator=torch.Generator().manual_seed(0))
        optimizer.zero_grad()
        terms["loss"].backward()
        optimizer.step()
        losses.append(terms["loss"].item())
    assert losses[-1] < 0.7 * losses[0]

    latent = sample(model, cond, space.latent_frames(FRAMES), steps=4, generator=torch.Generator().manual_seed(1))
    generated = stats.denormalize(space.decode(latent))
    assert latent.shape == (5, 40, 16) and generated.shape == (5, FRAMES, 70)
    assert torch.isfinite(generated).all()
