"""FVD, StyleGAN-V protocol: I3D (Kinetics-400) logits of 16-frame clips, Fréchet distance of the two clip sets.

Each clip: `clip_frames` consecutive frames, resized to 224 x 224 (bilinear, no antialiasing), scaled to [-1, 1],
fed as [B, 3, T, 224, 224]; the 400 pre-softmax logits are its feature. Weights, from a local file only:
- StyleGAN-V's `i3d_torchscript.pt` (TorchScript; called as `net(x, rescale=False, resize=False,
  return_features=True)`, i.e. we do the resizing and scaling ourselves, as StyleGAN-V's FVD does), or
- a pytorch-i3d state dict (`rgb_imagenet.pt`, keys in evaluation/i3d.py), loaded into `InceptionI3d`.
Clips are the same for real and generated videos: `clips_per_video` non-overlapping windows, evenly spaced,
the first starting at frame 0.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from evaluation.frechet import frechet_distance_from_features
from evaluation.i3d import InceptionI3d
from evaluation.weights import load_state_dict_checked, read_state_dict
from moda_train.core.weights import find_weights


class _TorchScriptI3D(nn.Module):
    """Adapter giving StyleGAN-V's TorchScript detector the same call as InceptionI3d."""

    def __init__(self, net: torch.jit.ScriptModule) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x, rescale=False, resize=False, return_features=True)


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


def clip_starts(num_frames: int, clip_frames: int, clips_per_video: int) -> list[int]:
    """Start frames of up to `clips_per_video` non-overlapping clips, evenly spaced from frame 0."""
    room = num_frames // clip_frames
    if room == 0:
        return []
    count = min(clips_per_video, room)
    if count == 1:
        return [0]
    return [int(round(i * (num_frames - clip_frames) / (count - 1))) for i in range(count)]


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
            n, t = batch.shape[:2]
            x = batch.flatten(0, 1).permute(0, 3, 1, 2).float()  # [N*T, 3, H, W]
            x = F.interpolate(x, size=(self.resolution,) * 2, mode="bilinear", align_corners=False)
            x = x.view(n, t, 3, self.resolution, self.resolution).permute(0, 2, 1, 3, 4)  # [N, 3, T, R, R]
            out.append(self.net(x / 127.5 - 1.0).float().cpu().numpy())
        return np.concatenate(out)


def fvd_from_features(real: np.ndarray, fake: np.ndarray) -> float:
    """FVD between two sets of I3D clip features [N, 400]."""
    return frechet_distance_from_features(real, fake)
