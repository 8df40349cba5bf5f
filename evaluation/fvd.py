"""FVD, StyleGAN-V protocol (`src/metrics/frechet_video_distance.py` there): I3D (Kinetics-400) logits of
16-frame clips, Fréchet distance of the two clip sets with covariances divided by N.

Clips (`fvd_clips`): one per video; in the real video `clip_frames` consecutive frames at a random start
(StyleGAN-V's dataset with `load_n_consecutive`, random offset; seeded by `fvd.seed` and the clip key), in the
generated video the first `clip_frames` frames (StyleGAN-V generates t = 0..15, and reads a generated-video folder
with `load_n_consecutive_random_offset=False`). Videos shorter than a clip are left out (`discard_short_videos`).
Weights, from a local file only:
- StyleGAN-V's `i3d_torchscript.pt`: uint8 clips [B, 3, T, H, W] go in as they are, called as
  `net(x, rescale=True, resize=True, return_features=True)`, exactly StyleGAN-V's call (the network scales to
  [-1, 1] and resizes to 224 itself);
- a pytorch-i3d state dict (`rgb_imagenet.pt`, keys in evaluation/i3d.py), loaded into `InceptionI3d`: frames
  resized to `fvd.resolution` (bilinear, no antialiasing) and scaled to [-1, 1] here. These are not the weights of
  published FVD, so such numbers are not comparable with papers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from evaluation.frechet import frechet_distance_from_features
from evaluation.i3d import InceptionI3d
from moda_train.core.weights import find_weights, load_state_dict_checked, read_state_dict


class _TorchScriptI3D(nn.Module):
    """StyleGAN-V's TorchScript detector with StyleGAN-V's call (it takes uint8 clips and preprocesses them)."""

    takes_uint8 = True

    def __init__(self, net: torch.jit.ScriptModule) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x, rescale=True, resize=True, return_features=True)


def load_i3d(path: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """Load I3D from a TorchScript file or a pytorch-i3d state dict; raise WeightsMissing / ValueError clearly."""
    path = find_weights("i3d", path, "fvd.weights")
    try:
        return _TorchScriptI3D(torch.jit.load(str(path), map_location=device)).eval()
    except RuntimeError:
        pass  # not a TorchScript archive: a state dict then
    state = read_state_dict(path)
    num_classes = state["logits.conv3d.weight"].shape[0] if "logits.conv3d.weight" in state else 400
    return load_state_dict_checked(InceptionI3d(num_classes), state, path).to(device).eval()


def fvd_clips(key: str, num_frames: int, clip_frames: int, seed: int) -> tuple[int, int] | None:
    """Start frames (real, generated) of a clip's FVD clips, or None when the video is too short (module doc)."""
    if num_frames < clip_frames:
        return None
    # A stable per-clip seed (not Python's salted hash): a rerun or a worker process draws the same start.
    rng = np.random.default_rng([seed, *key.encode()])
    return int(rng.integers(0, num_frames - clip_frames + 1)), 0


class I3DFeatures:
    """`extractor(clips uint8 [N, T, H, W, 3]) -> float32 [N, 400]` I3D logits (protocol in the module doc)."""

    def __init__(self, net: nn.Module, resolution: int = 224, batch_size: int = 4, device: str = "cpu") -> None:
        self.net, self.resolution, self.batch_size = net, resolution, batch_size
        self.device = torch.device(device)

    @torch.inference_mode()
    def __call__(self, clips: np.ndarray) -> np.ndarray:
        if clips.ndim != 5 or clips.shape[-1] != 3 or clips.dtype != np.uint8:
            raise ValueError(f"expected uint8 clips [N, T, H, W, 3], got {clips.dtype} {clips.shape}")
        out = []
        for start in range(0, len(clips), self.batch_size):
            batch = torch.from_numpy(clips[start : start + self.batch_size]).to(self.device)
            if getattr(self.net, "takes_uint8", False):
                out.append(self.net(batch.permute(0, 4, 1, 2, 3)).float().cpu().numpy())  # [N, 3, T, H, W] uint8
                continue
            n, t = batch.shape[:2]
            x = batch.flatten(0, 1).permute(0, 3, 1, 2).float()  # [N*T, 3, H, W]
            x = F.interpolate(x, size=(self.resolution,) * 2, mode="bilinear", align_corners=False)
            x = x.view(n, t, 3, self.resolution, self.resolution).permute(0, 2, 1, 3, 4)  # [N, 3, T, R, R]
            out.append(self.net(x / 127.5 - 1.0).float().cpu().numpy())
        return np.concatenate(out)


def fvd_from_features(real: np.ndarray, fake: np.ndarray) -> float:
    """FVD between two sets of I3D clip features [N, 400], covariances divided by N (StyleGAN-V's FeatureStats)."""
    return frechet_distance_from_features(real, fake, ddof=0)
