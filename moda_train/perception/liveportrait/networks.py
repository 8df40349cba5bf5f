"""LivePortrait's renderer networks: appearance features F, warping W (dense motion + occlusion), generator G,
stitching S; written here, with the module and parameter names of the released `.pth` files so they load strictly.

Shapes for the released sizes (LivePortrait's models.yaml; `RendererSizes()`), one source frame:

    F  crop [B, 3, 256, 256] in [0, 1]                      -> f_s [B, 32, 16, 64, 64]
    W  f_s, driving and source keypoints [B, 21, 3]         -> warped features [B, 256, 64, 64] (times occlusion)
    G  warped features                                      -> image [B, 3, 512, 512] in [0, 1]
    S  source and driving keypoints, flattened [B, 126]     -> [B, 65]: keypoint offsets (63) and a 2-D shift

Keypoints are in the crop-normalised frame of `moda_train.perception.motion.pose` ([-1, 1], x right, y down).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .blocks import DownBlock2d, Hourglass, ResBlock3d, SameBlock2d, SPADEResnetBlock

KP_VARIANCE = 0.01  # width of the keypoint heatmaps the dense-motion network sees


@dataclass(frozen=True)
class RendererSizes:
    """Channel and shape arguments of the four networks; the defaults are the released ones (models.yaml)."""

    num_kp: int = 21
    block_expansion: int = 64
    max_features: int = 512
    num_down_blocks: int = 2
    reshape_channel: int = 32
    reshape_depth: int = 16
    num_resblocks: int = 6
    dense_block_expansion: int = 32
    dense_max_features: int = 1024
    dense_num_blocks: int = 5
    compress: int = 4
    spade_hidden: int = 128
    generator_channels: int = 64
    stitching_hidden: tuple[int, ...] = (128, 128, 64)
    lip_hidden: tuple[int, ...] = (128, 128, 64)
    eye_hidden: tuple[int, ...] = field(default=(256, 256, 128, 128, 64))

    @property
    def feature_channels(self) -> int:
        """Channels of the 2-D maps entering and leaving the warp (256 released)."""
        return self.block_expansion * 2**self.num_down_blocks


def coordinate_grid(depth: int, height: int, width: int, like: Tensor) -> Tensor:
    """[D, H, W, 3] (x, y, z) coordinates spanning [-1, 1] over each axis (grid_sample's convention)."""
    axes = [torch.linspace(-1.0, 1.0, n, dtype=like.dtype, device=like.device) for n in (depth, height, width)]
    z, y, x = torch.meshgrid(*axes, indexing="ij")
    return torch.stack([x, y, z], dim=-1)


class AppearanceFeatureExtractor(nn.Module):
    """F: the source crop -> a 3-D appearance feature volume."""

    def __init__(self, sizes: RendererSizes = RendererSizes()) -> None:
        super().__init__()
        self.sizes = sizes
        self.first = SameBlock2d(3, sizes.block_expansion)
        widths = [min(sizes.max_features, sizes.block_expansion * 2**i) for i in range(sizes.num_down_blocks + 1)]
        self.down_blocks = nn.ModuleList(DownBlock2d(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.second = nn.Conv2d(widths[-1], sizes.max_features, 1)
        self.resblocks_3d = nn.Sequential()
        for i in range(sizes.num_resblocks):
            self.resblocks_3d.add_module(f"3dr{i}", ResBlock3d(sizes.reshape_channel))

    def forward(self, image: Tensor) -> Tensor:
        x = self.first(image)  # [B, 64, 256, 256]
        for block in self.down_blocks:
            x = block(x)  # [B, 256, 64, 64] after both
        x = self.second(x)  # [B, 512, 64, 64]
        B, _, H, W = x.shape
        return self.resblocks_3d(x.view(B, self.sizes.reshape_channel, self.sizes.reshape_depth, H, W))


class DenseMotionNetwork(nn.Module):
    """The dense deformation (a softmax mix of one identity and K keypoint-translation flows) and the occlusion map
    that take the source feature volume to the driving keypoints."""

    def __init__(self, sizes: RendererSizes) -> None:
        super().__init__()
        self.num_kp = sizes.num_kp
        groups = sizes.num_kp + 1
        self.hourglass = Hourglass(
            sizes.dense_block_expansion,
            groups * (sizes.compress + 1),
            sizes.dense_num_blocks,
            sizes.dense_max_features,
        )
        self.mask = nn.Conv3d(self.hourglass.out_filters, groups, 7, padding=3)
        self.compress = nn.Conv3d(sizes.reshape_channel, sizes.compress, 1)
        self.norm = nn.BatchNorm3d(sizes.compress)
        self.occlusion = nn.Conv2d(self.hourglass.out_filters * sizes.reshape_depth, 1, 7, padding=3)

    def forward(self, feature: Tensor, kp_driving: Tensor, kp_source: Tensor) -> tuple[Tensor, Tensor]:
        """feature [B, C, D, H, W], keypoints [B, K, 3] -> deformation [B, D, H, W, 3], occlusion [B, 1, H, W]."""
        feature = F.relu(self.norm(self.compress(feature)))  # [B, c, D, H, W]
        B, c, D, H, W = feature.shape
        grid = coordinate_grid(D, H, W, feature)  # [D, H, W, 3]
        # Per keypoint k, where each driving-frame location samples the source: shifted by source - driving.
        shifts = (kp_source - kp_driving)[:, :, None, None, None, :]  # [B, K, 1, 1, 1, 3]
        flows = torch.cat([grid.expand(B, 1, D, H, W, 3), grid + shifts], dim=1)  # [B, K+1, D, H, W, 3]
        groups = self.num_kp + 1
        sampled = F.grid_sample(
            feature.repeat_interleave(groups, dim=0), flows.flatten(0, 1), align_corners=False
        ).view(B, groups, c, D, H, W)
        heatmap = self._gaussian(kp_driving, grid) - self._gaussian(kp_source, grid)  # [B, K, D, H, W]
        heatmap = torch.cat([heatmap.new_zeros(B, 1, D, H, W), heatmap], dim=1)[:, :, None]  # [B, K+1, 1, ...]
        prediction = self.hourglass(torch.cat([heatmap, sampled], dim=2).view(B, -1, D, H, W))
        mask = F.softmax(self.mask(prediction), dim=1)  # [B, K+1, D, H, W]
        deformation = (flows * mask[..., None]).sum(dim=1)  # [B, D, H, W, 3]
        occlusion = torch.sigmoid(self.occlusion(prediction.view(B, -1, H, W)))  # [B, 1, H, W]
        return deformation, occlusion

    @staticmethod
    def _gaussian(kp: Tensor, grid: Tensor) -> Tensor:
        """Unnormalised Gaussians [B, K, D, H, W] of variance KP_VARIANCE around keypoints kp [B, K, 3]."""
        squared = (grid[None, None] - kp[:, :, None, None, None, :]).square().sum(-1)
        return torch.exp(-0.5 * squared / KP_VARIANCE)


class WarpingNetwork(nn.Module):
    """W: warp the source feature volume by the dense motion, flatten depth into channels, mask by occlusion."""

    def __init__(self, sizes: RendererSizes = RendererSizes()) -> None:
        super().__init__()
        channels = sizes.feature_channels
        self.dense_motion_network = DenseMotionNetwork(sizes)
        self.third = SameBlock2d(sizes.max_features, channels, lrelu=True)
        self.fourth = nn.Conv2d(channels, channels, 1)

    def forward(self, feature: Tensor, kp_driving: Tensor, kp_source: Tensor) -> Tensor:
        deformation, occlusion = self.dense_motion_network(feature, kp_driving, kp_source)
        warped = F.grid_sample(feature, deformation, align_corners=False)  # [B, C, D, H, W]
        x = self.fourth(self.third(warped.flatten(1, 2)))  # [B, 256, H, W]
        return x * occlusion


class SPADEDecoder(nn.Module):
    """G: warped features -> RGB at twice the crop size (SPADE blocks conditioned on the features themselves,
    two 2x upsamplings, a pixel-shuffle output layer, sigmoid)."""

    def __init__(self, sizes: RendererSizes = RendererSizes()) -> None:
        super().__init__()
        # c: the warped features' channels (LivePortrait's min(max_features, block_expansion * 2**downs), 256)
        c, hidden, out = sizes.feature_channels, sizes.spade_hidden, sizes.generator_channels
        self.fc = nn.Conv2d(c, 2 * c, 3, padding=1)
        for i in range(6):
            self.add_module(f"G_middle_{i}", SPADEResnetBlock(2 * c, 2 * c, c, hidden))
        self.up_0 = SPADEResnetBlock(2 * c, c, c, hidden)
        self.up_1 = SPADEResnetBlock(c, out, c, hidden)
        self.conv_img = nn.Sequential(nn.Conv2d(out, 3 * 4, 3, padding=1), nn.PixelShuffle(2))

    def forward(self, feature: Tensor) -> Tensor:
        x = self.fc(feature)  # [B, 512, 64, 64]
        for i in range(6):
            x = getattr(self, f"G_middle_{i}")(x, feature)
        x = self.up_0(F.interpolate(x, scale_factor=2), feature)  # [B, 256, 128, 128]
        x = self.up_1(F.interpolate(x, scale_factor=2), feature)  # [B, 64, 256, 256]
        return torch.sigmoid(self.conv_img(F.leaky_relu(x, 0.2)))  # [B, 3, 512, 512]


class StitchingRetargetingNetwork(nn.Module):
    """S and the two retargeting MLPs: linear layers with ReLU between (`mlp.0`, `mlp.2`, ...)."""

    def __init__(self, input_size: int, hidden: tuple[int, ...], output_size: int) -> None:
        super().__init__()
        widths = [input_size, *hidden]
        layers: list[nn.Module] = []
        for a, b in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        self.mlp = nn.Sequential(*layers, nn.Linear(widths[-1], output_size))

    def forward(self, x: Tensor) -> Tensor:
        return self.mlp(x)


def stitching_networks(sizes: RendererSizes = RendererSizes()) -> dict[str, StitchingRetargetingNetwork]:
    """The three MLPs of `stitching_retargeting_module.pth`, by the names it stores them under."""
    k3 = 3 * sizes.num_kp
    return {
        "retarget_shoulder": StitchingRetargetingNetwork(2 * k3, sizes.stitching_hidden, k3 + 2),  # stitching
        "retarget_mouth": StitchingRetargetingNetwork(k3 + 2, sizes.lip_hidden, k3),  # lip retargeting
        "retarget_eye": StitchingRetargetingNetwork(k3 + 3, sizes.eye_hidden, k3),  # eye retargeting
    }


def stitch(stitching: StitchingRetargetingNetwork, kp_source: Tensor, kp_driving: Tensor) -> Tensor:
    """Driving keypoints [B, K, 3] corrected by the stitching network so the animated face lines up with the
    source photo around the crop border: per-keypoint offsets plus one shift of x and y."""
    B, K, _ = kp_driving.shape
    delta = stitching(torch.cat([kp_source.reshape(B, -1), kp_driving.reshape(B, -1)], dim=1))
    offsets, shift = delta[:, : 3 * K].view(B, K, 3), delta[:, 3 * K :]
    shifted = kp_driving + offsets
    return torch.cat([shifted[..., :2] + shift[:, None, :], shifted[..., 2:]], dim=-1)


class RendererNetworks(nn.Module):
    """F, W, G and the stitching MLPs together, frozen in eval mode."""

    def __init__(self, sizes: RendererSizes = RendererSizes()) -> None:
        super().__init__()
        self.sizes = sizes
        self.appearance = AppearanceFeatureExtractor(sizes)
        self.warping = WarpingNetwork(sizes)
        self.generator = SPADEDecoder(sizes)
        self.stitching = nn.ModuleDict(stitching_networks(sizes))
        self.requires_grad_(False).eval()

    def released_state_dicts(self) -> dict[str, dict[str, Tensor]]:
        """This module's tensors in the layout of the released files (`RELEASED_FILES`)."""
        return {
            "appearance_feature_extractor.pth": self.appearance.state_dict(),
            "warping_module.pth": self.warping.state_dict(),
            "spade_generator.pth": self.generator.state_dict(),
            # the released file holds the three MLPs as sub-dicts saved from DistributedDataParallel wrappers
            "stitching_retargeting_module.pth": {
                name: {f"module.{k}": v for k, v in net.state_dict().items()}
                for name, net in self.stitching.items()
            },
        }

    @classmethod
    def from_folder(cls, folder: str | Path) -> RendererNetworks:
        """The networks with the weights of the four files of `RELEASED_FILES` (`released_path`), sizes read from
        the tensors' shapes (the released files give `RendererSizes()`), every file loaded strictly: a missing
        file, key or shape raises FileNotFoundError / ValueError naming it."""
        folder = Path(folder)
        states = {
            name: torch.load(released_path(folder, name), map_location="cpu", weights_only=True)
            for name in RELEASED_FILES
        }
        try:
            networks = cls(infer_sizes(states))
        except (KeyError, AttributeError, TypeError) as err:
            raise ValueError(f"{folder}: not LivePortrait's released renderer layout (no {err})") from err
        parts = {
            "appearance_feature_extractor.pth": {"": networks.appearance},
            "warping_module.pth": {"": networks.warping},
            "spade_generator.pth": {"": networks.generator},
            "stitching_retargeting_module.pth": dict(networks.stitching.items()),
        }
        for name, targets in parts.items():
            for part, net in targets.items():
                state = states[name][part] if part else states[name]
                try:
                    net.load_state_dict({k.removeprefix("module."): v for k, v in state.items()})
                except RuntimeError as err:
                    problem = " ".join(str(err).split("\n")[1:]).strip()
                    path = released_path(folder, name)
                    raise ValueError(f"{path}: not LivePortrait's released layout: {problem}") from err
        return networks.eval()


def released_path(folder: Path, name: str) -> Path:
    """Where a released file is: in `folder`, or for the stitching file, as LivePortrait ships it, in
    `retargeting_models/` beside `folder` (its `base_models/`)."""
    candidates = [folder / name]
    if name == "stitching_retargeting_module.pth":
        candidates.append(folder.parent / "retargeting_models" / name)
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(f"LivePortrait renderer weights: {' or '.join(map(str, candidates))} not found")


def _count(state: dict[str, Tensor], prefix: str) -> int:
    return len({key[len(prefix) :].split(".")[0] for key in state if key.startswith(prefix)})


def _hidden(state: dict[str, Tensor]) -> tuple[int, ...]:
    """Hidden widths of a stitching MLP from its `module.mlp.<i>.weight` shapes (all but the output layer)."""
    layers = sorted(int(k.split(".")[-2]) for k in state if k.endswith(".weight"))
    return tuple(state[f"module.mlp.{i}.weight"].shape[0] for i in layers[:-1])


def infer_sizes(states: dict[str, dict]) -> RendererSizes:
    """The RendererSizes that released-layout state dicts {file: state} were saved from."""
    f, w, g = (states[name] for name in RELEASED_FILES[:3])
    stitching = states["stitching_retargeting_module.pth"]
    dense = "dense_motion_network."
    reshape_channel = w[f"{dense}compress.weight"].shape[1]
    max_features = f["second.weight"].shape[0]
    encoder = f"{dense}hourglass.encoder.down_blocks."
    num_blocks = _count(w, encoder)
    return RendererSizes(
        num_kp=w[f"{dense}mask.weight"].shape[0] - 1,
        block_expansion=f["first.conv.weight"].shape[0],
        max_features=max_features,
        num_down_blocks=_count(f, "down_blocks."),
        reshape_channel=reshape_channel,
        reshape_depth=max_features // reshape_channel,
        num_resblocks=_count(f, "resblocks_3d."),
        dense_block_expansion=w[f"{encoder}0.conv.weight"].shape[0] // 2,
        dense_max_features=max(w[f"{encoder}{i}.conv.weight"].shape[0] for i in range(num_blocks)),
        dense_num_blocks=num_blocks,
        compress=w[f"{dense}compress.weight"].shape[0],
        spade_hidden=g["G_middle_0.norm_0.mlp_shared.0.weight"].shape[0],
        generator_channels=g["up_1.conv_1.bias"].shape[0],
        stitching_hidden=_hidden(stitching["retarget_shoulder"]),
        lip_hidden=_hidden(stitching["retarget_mouth"]),
        eye_hidden=_hidden(stitching["retarget_eye"]),
    )


RELEASED_FILES = (
    "appearance_feature_extractor.pth",
    "warping_module.pth",
    "spade_generator.pth",
    "stitching_retargeting_module.pth",
)
"""LivePortrait's renderer files, loaded by `RendererNetworks.from_folder` (the motion extractor is separate)."""
