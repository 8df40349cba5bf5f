"""Convolutional blocks of LivePortrait's renderer networks, under the parameter names of its released files.

Every block is conv -> BatchNorm -> activation (pooling or upsampling where named); in eval mode the BatchNorms use
their stored running statistics, as the released weights expect. The SPADE residual blocks wrap their convolutions
in `torch.nn.utils.spectral_norm`, whose `weight_orig` / `weight_u` / `weight_v` tensors are what the released
generator stores (in eval mode the stored vectors are used as they are, no power iteration runs).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import spectral_norm


class SameBlock2d(nn.Module):
    """conv 3x3 -> BatchNorm -> ReLU (or LeakyReLU), same resolution."""

    def __init__(self, cin: int, cout: int, lrelu: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm = nn.BatchNorm2d(cout)
        self.leaky = lrelu

    def forward(self, x: Tensor) -> Tensor:
        x = self.norm(self.conv(x))
        return F.leaky_relu(x) if self.leaky else F.relu(x)


class DownBlock2d(nn.Module):
    """conv 3x3 -> BatchNorm -> ReLU -> 2x2 average pool."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm = nn.BatchNorm2d(cout)

    def forward(self, x: Tensor) -> Tensor:
        return F.avg_pool2d(F.relu(self.norm(self.conv(x))), 2)


class ResBlock3d(nn.Module):
    """Pre-activation 3-D residual block: x + conv(relu(bn(conv(relu(bn(x))))))."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv3d(channels, channels, 3, padding=1)
        self.norm1 = nn.BatchNorm3d(channels)
        self.norm2 = nn.BatchNorm3d(channels)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(F.relu(self.norm2(self.conv1(F.relu(self.norm1(x))))))


class DownBlock3d(nn.Module):
    """conv 3x3x3 -> BatchNorm -> ReLU -> average pool over height and width (depth kept)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv3d(cin, cout, 3, padding=1)
        self.norm = nn.BatchNorm3d(cout)

    def forward(self, x: Tensor) -> Tensor:
        return F.avg_pool3d(F.relu(self.norm(self.conv(x))), (1, 2, 2))


class UpBlock3d(nn.Module):
    """Nearest 2x upsampling of height and width -> conv 3x3x3 -> BatchNorm -> ReLU."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv3d(cin, cout, 3, padding=1)
        self.norm = nn.BatchNorm3d(cout)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.norm(self.conv(F.interpolate(x, scale_factor=(1, 2, 2)))))


def _width(base: int, level: int, cap: int) -> int:
    return min(cap, base * 2**level)


class Encoder(nn.Module):
    """Hourglass encoder: `num_blocks` DownBlock3d, channel width doubling from `base` up to `cap`."""

    def __init__(self, base: int, cin: int, num_blocks: int, cap: int) -> None:
        super().__init__()
        widths = [cin] + [_width(base, i + 1, cap) for i in range(num_blocks)]
        self.down_blocks = nn.ModuleList(DownBlock3d(a, b) for a, b in zip(widths[:-1], widths[1:]))

    def forward(self, x: Tensor) -> list[Tensor]:
        outs = [x]
        for block in self.down_blocks:
            outs.append(block(outs[-1]))
        return outs


class Decoder(nn.Module):
    """Hourglass decoder: UpBlock3d per level with skip concatenation, then conv -> BatchNorm -> ReLU."""

    def __init__(self, base: int, cin: int, num_blocks: int, cap: int) -> None:
        super().__init__()
        levels = range(num_blocks - 1, -1, -1)
        self.up_blocks = nn.ModuleList(
            UpBlock3d((1 if i == num_blocks - 1 else 2) * _width(base, i + 1, cap), _width(base, i, cap))
            for i in levels
        )
        self.out_filters = base + cin
        self.conv = nn.Conv3d(self.out_filters, self.out_filters, 3, padding=1)
        self.norm = nn.BatchNorm3d(self.out_filters)

    def forward(self, skips: list[Tensor]) -> Tensor:
        skips = list(skips)
        x = skips.pop()
        for block in self.up_blocks:
            x = torch.cat([block(x), skips.pop()], dim=1)
        return F.relu(self.norm(self.conv(x)))


class Hourglass(nn.Module):
    """3-D U-Net over [B, C, D, H, W]; output channels `out_filters` = base + input channels."""

    def __init__(self, base: int, cin: int, num_blocks: int, cap: int) -> None:
        super().__init__()
        self.encoder = Encoder(base, cin, num_blocks, cap)
        self.decoder = Decoder(base, cin, num_blocks, cap)
        self.out_filters = self.decoder.out_filters

    def forward(self, x: Tensor) -> Tensor:
        return self.decoder(self.encoder(x))


class SPADE(nn.Module):
    """Spatially adaptive normalisation: instance-normalised x, scaled and shifted by maps predicted from `seg`."""

    def __init__(self, channels: int, label_channels: int, hidden: int = 128) -> None:
        super().__init__()
        self.mlp_shared = nn.Sequential(nn.Conv2d(label_channels, hidden, 3, padding=1), nn.ReLU())
        self.mlp_gamma = nn.Conv2d(hidden, channels, 3, padding=1)
        self.mlp_beta = nn.Conv2d(hidden, channels, 3, padding=1)

    def forward(self, x: Tensor, seg: Tensor) -> Tensor:
        hidden = self.mlp_shared(F.interpolate(seg, size=x.shape[2:], mode="nearest"))
        return F.instance_norm(x) * (1 + self.mlp_gamma(hidden)) + self.mlp_beta(hidden)


class SPADEResnetBlock(nn.Module):
    """Residual block of two SPADE -> LeakyReLU(0.2) -> spectral-normed conv; a learned 1x1 shortcut when the
    width changes."""

    def __init__(self, cin: int, cout: int, label_channels: int, hidden: int = 128) -> None:
        super().__init__()
        middle = min(cin, cout)
        self.learned_shortcut = cin != cout
        self.conv_0 = spectral_norm(nn.Conv2d(cin, middle, 3, padding=1))
        self.conv_1 = spectral_norm(nn.Conv2d(middle, cout, 3, padding=1))
        self.norm_0 = SPADE(cin, label_channels, hidden)
        self.norm_1 = SPADE(middle, label_channels, hidden)
        if self.learned_shortcut:
            self.conv_s = spectral_norm(nn.Conv2d(cin, cout, 1, bias=False))
            self.norm_s = SPADE(cin, label_channels, hidden)

    def forward(self, x: Tensor, seg: Tensor) -> Tensor:
        shortcut = self.conv_s(self.norm_s(x, seg)) if self.learned_shortcut else x
        dx = self.conv_0(F.leaky_relu(self.norm_0(x, seg), 0.2))
        return shortcut + self.conv_1(F.leaky_relu(self.norm_1(dx, seg), 0.2))
