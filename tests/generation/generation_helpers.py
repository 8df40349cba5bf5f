"""Helpers shared by the generation tests: a random-init tiny module, a speech-like wave, WAV writing."""

from __future__ import annotations

import numpy as np
import torch
from omegaconf import OmegaConf
from scipy.io import wavfile

from moda_train.core.config_loader import CONFIGS_ROOT
from moda_train.experiment import load_experiment
from moda_train.lit.mmdit_module import MoDALightningModule

TINY = CONFIGS_ROOT / "experiments" / "mmdit_tiny_cpu.yaml"
SMALL_MODEL = ("model.depth_single_stream=1", "model.depth_two_stream=1")


def speech_like(seconds: float, seed: int = 0, sample_rate: int = 16000) -> np.ndarray:
    """A voiced, syllable-modulated test wave (float32 mono): loud and quiet stretches that audio features see."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    envelope = np.clip(np.sin(2 * np.pi * rng.uniform(2.5, 4.5) * t + rng.uniform(0, 6)), 0, None) ** 2
    carrier = np.sin(2 * np.pi * 140 * t) + 0.5 * np.sin(2 * np.pi * 700 * t) + 0.1 * rng.normal(size=t.size)
    return (0.3 * envelope * carrier).astype(np.float32)


def random_module(*overrides: str) -> MoDALightningModule:
    """A random-init tiny module (adaLN outputs perturbed so conditions reach the output); no training."""
    _, tree = load_experiment(TINY, ["data.stats_path=missing/stats.json", *SMALL_MODEL, *overrides])
    torch.manual_seed(0)
    module = MoDALightningModule(OmegaConf.to_container(tree, resolve=True))
    with torch.no_grad():
        for p in module.ema.parameters():
            if not p.any():
                p.normal_(std=0.05)
    return module.eval()


def write_wav(path, wave: np.ndarray, sample_rate: int = 16000, channels: int = 1) -> str:
    """Write a float wave as 16-bit PCM, optionally duplicated to several channels."""
    pcm = (np.clip(wave, -1, 1) * 32767).astype(np.int16)
    wavfile.write(path, sample_rate, np.repeat(pcm[:, None], channels, axis=1) if channels > 1 else pcm)
    return str(path)
