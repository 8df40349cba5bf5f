"""Generation from a checkpoint trained in the motion-VAE latent space: it works, and needs no VAE file."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from moda_train.core.config_loader import CONFIGS_ROOT
from moda_train.data.synthetic import write_synthetic_shards
from moda_train.experiment import load_experiment
from moda_train.generation.motion_generator import MotionGenerator
from moda_train.generation.pipeline import load_checkpoint
from moda_train.launch.run import run_experiment
from moda_train.perception.audio import LogMelExtractor

from .generation_helpers import SMALL_MODEL, TINY, speech_like


def _run(experiment, shards, out_dir, *overrides):
    cfg, tree = load_experiment(
        experiment,
        [
            f"data.train_shards={shards}/train-*.tar", "data.val_shards=", f"data.stats_path={shards}/stats.json",
            f"train.out_dir={out_dir}", "data.num_workers=0", "train.max_steps=2", "train.global_batch_size=4",
            "train.micro_batch_size=4", *overrides,
        ],
    )  # fmt: skip
    return run_experiment(cfg, tree, experiment) / "checkpoints" / "last.ckpt"


@pytest.mark.slow
def test_vae_space_checkpoint_generates_long_audio_without_its_vae_file(tmp_path):
    shards = write_synthetic_shards(tmp_path / "shards", num_clips=4, frames=100, clips_per_shard=2, val_clips=0)
    vae_experiment = CONFIGS_ROOT / "experiments" / "vae_tiny_cpu.yaml"
    # the VAE needs latent statistics, which it measures when it validates
    vae = _run(vae_experiment, shards, tmp_path, "train.run_name=vae", f"data.val_shards={shards}/train-*.tar",
               "train.val_every_n_steps=1")  # fmt: skip
    ckpt = _run(TINY, shards, tmp_path, "train.run_name=mmdit", "model.motion_space=vae",
                f"model.vae_checkpoint={vae}", *SMALL_MODEL)  # fmt: skip

    wave = speech_like(4.0)  # 100 frames: two windows
    identity, reference = torch.randn(63).numpy(), torch.zeros(70).numpy()
    module = load_checkpoint(ckpt)
    assert module.space.latent_dim != 70
    generator = MotionGenerator(module, LogMelExtractor())
    before = generator.generate(wave, identity, reference, seeds=(0, 1))
    assert before.shape == (2, 100, 70) and torch.isfinite(torch.from_numpy(before)).all()

    vae.rename(tmp_path / "moved.ckpt")  # the checkpoint carries the VAE's config, weights and statistics
    module = load_checkpoint(ckpt)
    after = MotionGenerator(module, LogMelExtractor()).generate(wave, identity, reference, seeds=(0, 1))
    assert module.hparams["config"]["model"]["vae_config"]["latent_dim"] == module.space.latent_dim
    np.testing.assert_array_equal(after, before)
    assert np.abs(before[0] - before[1]).max() > 0  # seeds differ: the latents carry the noise
