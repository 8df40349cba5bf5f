"""The vae config group: presets and experiments load; mistakes name the key."""

import pytest
from omegaconf import OmegaConf

from moda_train.core.config_loader import CONFIGS_ROOT, ConfigError
from moda_train.experiment import VAEExperiment, load_experiment
from moda_train.lit.vae_module import MotionVAELightningModule


@pytest.mark.parametrize("preset, downsample", [("tiny", 2), ("full", 4)])
def test_vae_presets_and_experiments_load(preset, downsample, tmp_path):
    experiment = tmp_path / "exp.yaml"
    experiment.write_text(f"task: vae\ndefaults:\n  vae: {preset}\n")
    typed, _ = load_experiment(experiment, ["data.train_shards=x", "data.stats_path=y"])
    assert isinstance(typed, VAEExperiment) and typed.vae.downsample == downsample
    full, _ = load_experiment(CONFIGS_ROOT / "experiments" / "vae_full.yaml")
    assert full.vae.hidden_size == 256 and full.train.strategy == "ddp"


def test_bad_vae_keys_are_named():
    tiny = CONFIGS_ROOT / "experiments" / "vae_tiny_cpu.yaml"
    with pytest.raises(ConfigError, match=r"vae\.latent_dimm"):
        load_experiment(tiny, ["vae.latent_dimm=3"])
    with pytest.raises(ConfigError, match=r"vae\.downsample=3: choose one of \(1, 2, 4\)"):
        load_experiment(tiny, ["vae.downsample=3"])


def test_module_refuses_a_window_the_vae_cannot_split():
    typed, tree = load_experiment(
        CONFIGS_ROOT / "experiments" / "vae_tiny_cpu.yaml", ["data.window_frames=81", "vae.downsample=2"]
    )
    with pytest.raises(ValueError, match="data.window_frames=81 is not a multiple of vae.downsample=2"):
        MotionVAELightningModule(OmegaConf.to_container(tree, resolve=True))
