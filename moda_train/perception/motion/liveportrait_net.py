"""LivePortrait's motion-extractor network M: a ConvNeXt-V2-tiny backbone with pose/keypoint/expression heads.

Module and parameter names follow LivePortrait's `motion_extractor.pth` (under a `detector.` prefix there), so its
released weights load unchanged. Input: RGB float [B, 3, 256, 256] in [0, 1]. Output (raw head values):
kp [B, 3K] canonical keypoints, exp [B, 3K] expression, pitch/yaw/roll [B, 66] bin logits (3-degree bins),
scale [B, 1], t [B, 3].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

NUM_BINS = 66  # head-pose bins of 3 degrees; expectation * 3 - 97.5 gives degrees


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW map (ConvNeXt's channels_first LayerNorm)."""

    def forward(self, x: Tensor) -> Tensor:
        return F.layer_norm(
            x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias, self.eps
        ).permute(0, 3, 1, 2)


class GRN(nn.Module):
    """Global response normalisation (ConvNeXt-V2) over an NHWC map."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1, 1, 1, dim))
        self.beta = nn.Parameter(torch.zeros(1, 1, 1, dim))

    def forward(self, x: Tensor) -> Tensor:
        gx = torch.norm(x, p=2, dim=(1, 2), keepdim=True)
        nx = gx / (gx.mean(dim=-1, keepdim=True) + 1e-6)
        return self.gamma * (x * nx) + self.beta + x


class Block(nn.Module):
    """ConvNeXt-V2 block: depthwise 7x7, LayerNorm, MLP with GRN, residual."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.grn = GRN(4 * dim)
        self.pwconv2 = nn.Linear(4 * dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        y = self.dwconv(x).permute(0, 2, 3, 1)  # NCHW -> NHWC
        y = self.pwconv2(self.grn(self.act(self.pwconv1(self.norm(y)))))
        return x + y.permute(0, 3, 1, 2)


class LivePortraitMotionNet(nn.Module):
    """ConvNeXt-V2-tiny (depths 3-3-9-3, widths 96-768) + LivePortrait's motion heads."""

    def __init__(
        self, num_kp: int = 21, depths: tuple[int, ...] = (3, 3, 9, 3), dims: tuple[int, ...] = (96, 192, 384, 768)
    ) -> None:
        super().__init__()
        stem = nn.Sequential(nn.Conv2d(3, dims[0], kernel_size=4, stride=4), LayerNorm2d(dims[0], eps=1e-6))
        downs = [
            nn.Sequential(LayerNorm2d(dims[i], eps=1e-6), nn.Conv2d(dims[i], dims[i + 1], kernel_size=2, stride=2))
            for i in range(3)
        ]
        self.downsample_layers = nn.ModuleList([stem, *downs])
        self.stages = nn.ModuleList(nn.Sequential(*[Block(dim) for _ in range(n)]) for dim, n in zip(dims, depths))
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)
        self.fc_kp = nn.Linear(dims[-1], 3 * num_kp)
        self.fc_scale = nn.Linear(dims[-1], 1)
        self.fc_pitch = nn.Linear(dims[-1], NUM_BINS)
        self.fc_yaw = nn.Linear(dims[-1], NUM_BINS)
        self.fc_roll = nn.Linear(dims[-1], NUM_BINS)
        self.fc_t = nn.Linear(dims[-1], 3)
        self.fc_exp = nn.Linear(dims[-1], 3 * num_kp)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        for down, stage in zip(self.downsample_layers, self.stages):
            x = stage(down(x))
        x = self.norm(x.mean(dim=(-2, -1)))  # global average pool -> [B, C]
        heads = ("kp", "scale", "pitch", "yaw", "roll", "t", "exp")
        return {name: getattr(self, f"fc_{name}")(x) for name in heads}


def net_from_state_dict(state: dict[str, Tensor]) -> LivePortraitMotionNet:
    """A network shaped like the checkpoint (stage widths and depths read from its tensors), weights loaded.

    The released checkpoint gives ConvNeXt-V2-tiny; tests save much smaller random networks of the same design.
    """
    dims = tuple(int(state[f"downsample_layers.{i}.{1 if i else 0}.weight"].shape[0]) for i in range(4))
    depths = tuple(
        len({key.split(".")[2] for key in state if key.startswith(f"stages.{i}.")}) for i in range(len(dims))
    )
    net = LivePortraitMotionNet(num_kp=int(state["fc_kp.weight"].shape[0]) // 3, depths=depths, dims=dims)
    net.load_state_dict(state)
    return net


def bins_to_degrees(logits: Tensor) -> Tensor:
    """Head-pose bin logits [B, 66] -> degrees [B] (softmax expectation, LivePortrait's 97.5-degree offset)."""
    index = torch.arange(logits.shape[-1], dtype=logits.dtype, device=logits.device)
    return (logits.softmax(dim=-1) * index).sum(dim=-1) * 3 - 97.5
