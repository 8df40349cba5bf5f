"""SyncNet (Chung & Zisserman 2016) with the layer layout of syncnet_python, so `syncnet_v2.model` loads.

Published weight layout (a plain state dict, no BatchNorm step counters), `nn.Sequential` indices:
- `netcnnaud`: conv 0 [64, 1, 3, 3], 4 [192, 64, 3, 3], 8 [384, 192, 3, 3], 11 [256, 384, 3, 3],
  14 [256, 256, 3, 3], 18 [512, 256, 5, 4] (each with a bias), BatchNorm2d right after each conv
  (1, 5, 9, 12, 15, 19);
- `netfcaud` and `netfclip`: Linear 0 [512, 512], BatchNorm1d 1 [512], Linear 3 [1024, 512];
- `netcnnlip`: conv 0 [96, 3, 5, 7, 7], 4 [256, 96, 1, 5, 5], 8 / 11 / 14 [256, 256, 1, 3, 3],
  18 [512, 256, 1, 6, 6], BatchNorm3d after each conv (1, 5, 9, 12, 15, 19).
Inputs: audio MFCC windows [B, 1, 13, 20] (20 MFCC frames = 5 video frames); video windows [B, 3, 5, 224, 224]
of BGR face crops with raw 0..255 values (syncnet_python feeds cv2 frames unnormalised). Both give [B, 1024].
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from moda_train.core.weights import find_weights, load_state_dict_checked, read_state_dict

EMBED_DIM = 1024


def _conv2d(cin: int, cout: int, kernel, stride=1, padding=0) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel, stride, padding), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


def _conv3d(cin: int, cout: int, kernel, stride=1, padding=0) -> list[nn.Module]:
    return [nn.Conv3d(cin, cout, kernel, stride, padding), nn.BatchNorm3d(cout), nn.ReLU(inplace=True)]


def _head(dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, dim))


class SyncNet(nn.Module):
    """Audio tower (MFCC -> 1024) and lip tower (5 face frames -> 1024); module names match syncnet_python."""

    def __init__(self, embed_dim: int = EMBED_DIM) -> None:
        super().__init__()
        # The (1, 1) max-pool does nothing; it is kept so the Sequential indices match the published weights.
        self.netcnnaud = nn.Sequential(
            *_conv2d(1, 64, 3, 1, 1),
            nn.MaxPool2d(1, 1),
            *_conv2d(64, 192, 3, 1, 1),
            nn.MaxPool2d(3, (1, 2)),
            *_conv2d(192, 384, 3, 1, 1),
            *_conv2d(384, 256, 3, 1, 1),
            *_conv2d(256, 256, 3, 1, 1),
            nn.MaxPool2d(3, 2),
            *_conv2d(256, 512, (5, 4)),
        )
        self.netfcaud = _head(embed_dim)
        self.netfclip = _head(embed_dim)
        self.netcnnlip = nn.Sequential(
            *_conv3d(3, 96, (5, 7, 7), (1, 2, 2)),
            nn.MaxPool3d((1, 3, 3), (1, 2, 2)),
            *_conv3d(96, 256, (1, 5, 5), (1, 2, 2), (0, 1, 1)),
            nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)),
            *_conv3d(256, 256, (1, 3, 3), 1, (0, 1, 1)),
            *_conv3d(256, 256, (1, 3, 3), 1, (0, 1, 1)),
            *_conv3d(256, 256, (1, 3, 3), 1, (0, 1, 1)),
            nn.MaxPool3d((1, 3, 3), (1, 2, 2)),
            *_conv3d(256, 512, (1, 6, 6)),
        )

    def forward_audio(self, mfcc: Tensor) -> Tensor:
        """[B, 1, 13, 20] MFCC windows -> [B, 1024]."""
        return self.netfcaud(self.netcnnaud(mfcc).flatten(1))

    def forward_video(self, frames: Tensor) -> Tensor:
        """[B, 3, 5, 224, 224] BGR 0..255 face windows -> [B, 1024]."""
        return self.netfclip(self.netcnnlip(frames).flatten(1))


def load_syncnet(path: str | Path, device: str | torch.device = "cpu") -> SyncNet:
    """Load `syncnet_v2.model` (a state dict); raise WeightsMissing if absent, ValueError if it does not fit."""
    path = find_weights("syncnet", path, "sync.weights")
    state = read_state_dict(path)
    return load_state_dict_checked(SyncNet(), state, path).to(device).eval()
