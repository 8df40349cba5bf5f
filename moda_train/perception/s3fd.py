"""S3FD, the face detector of syncnet_python's `run_pipeline.py`, written here with the module and parameter names
of its `sfd_face.pth` so the released file loads strictly (key and shape list: docs/s3fd_layout.tsv).

Network (`S3FDNet`): VGG16's 13 convolutions conv1_1..conv5_3 (`vgg.0`..`vgg.28`, ReLU after each, 2 x 2 max
pools, the third with ceil_mode), fc6 as a 3 x 3 convolution with dilation 6 and fc7 as a 1 x 1 one (`vgg.31`,
`vgg.33`), then conv6_1/6_2 and conv7_1/7_2 (`extras.0..3`, the second of each pair with stride 2). Six source
maps, strides 4, 8, 16, 32, 64, 128: conv3_3, conv4_3 and conv5_3 L2-normalised over channels with learned scales
(`L2Norm3_3`, `L2Norm4_3`, `L2Norm5_3`), fc7, conv6_2, conv7_2. Each source has a 3 x 3 box head (`loc.i`, 4
offsets per cell) and a class head (`conf.i`: background, face); the conv3_3 class head gives 3 background scores
and keeps their maximum ("max-out background", against the many small false positives at that stride).

Detection (`S3FDDetector.detect`), as syncnet_python's `S3FD.detect_faces(image, conf_th=0.9, scales=[0.25])`
with the defaults of its `Detect` and `PriorBox`:
- the RGB frame resized by `scale` (`cv2.resize(fx=fy=scale)`, bilinear), minus the per-channel mean
  (R 123, G 117, B 104), in RGB order;
- one prior box per cell of each source map: centre ((j + 0.5) step / W, (i + 0.5) step / H), side
  min_size / W by min_size / H, with steps (4, 8, ..., 128) and min sizes (16, 32, ..., 512) in resized pixels,
  all relative to the resized image's W x H;
- decoded with variances (0.1, 0.2): centre = prior centre + loc_xy * 0.1 * prior size, size = prior size *
  exp(loc_wh * 0.2);
- face probability = softmax over (background, face); boxes above 0.05, at most the 5000 best, non-maximum
  suppression at IoU 0.3, at most 750 kept; of those, boxes above `confidence` (0.9), scaled by the original
  frame's width and height (so back to its pixels), then suppressed again at IoU 0.1.
Known difference: decoding and both suppressions run here in float64 numpy (syncnet_python: the first two in
float32 torch), which matters only where a score or an IoU lies within float32 round-off of a threshold or of
another score.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from moda_train.core.weights import load_state_dict_checked, read_state_dict

# VGG16 up to conv5_3 and pool5: channels of a 3 x 3 convolution (with ReLU), "M" a 2 x 2 max pool, "C" the same
# with ceil_mode (S3FD's pool3, so odd conv3 maps keep their last row). The indices of `vgg` follow from it.
VGG_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, "C", 512, 512, 512, "M", 512, 512, 512, "M")
# `vgg` layers before each L2-normalised source (conv3_3, conv4_3, conv5_3, each after its ReLU).
NORMED_SOURCE_ENDS = (16, 23, 30)
NORM_SCALES = {"L2Norm3_3": (256, 10.0), "L2Norm4_3": (512, 8.0), "L2Norm5_3": (512, 5.0)}
SOURCE_CHANNELS = (256, 512, 512, 1024, 512, 256)
STEPS = (4, 8, 16, 32, 64, 128)
MIN_SIZES = (16, 32, 64, 128, 256, 512)
VARIANCES = (0.1, 0.2)
MAXOUT_BACKGROUND = 3
# syncnet_python: its Detect() defaults, and run_pipeline.py's call (conf_th=0.9, scales=[facedet_scale=0.25]).
CANDIDATE_THRESHOLD = 0.05
CANDIDATE_TOP_K = 5000
FIRST_NMS = 0.3
KEEP_TOP_K = 750
FINAL_NMS = 0.1
CONFIDENCE = 0.9
SCALE = 0.25
MEAN_RGB = np.array([123.0, 117.0, 104.0], np.float32)
# The smallest resized side the five pools leave at least one cell of (28 -> 14, 7, 4, 2, 1; 27 ends at 0).
MIN_INPUT = 28


class L2Norm(nn.Module):
    """x / |x| over channels (plus 1e-10), times a learned per-channel scale (`weight`, initialised to `scale`)."""

    def __init__(self, channels: int, scale: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.full((channels,), scale))

    def forward(self, x: Tensor) -> Tensor:
        return x / (x.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10) * self.weight[None, :, None, None]


def _vgg() -> nn.ModuleList:
    layers: list[nn.Module] = []
    channels = 3
    for item in VGG_LAYOUT:
        if item in ("M", "C"):
            layers.append(nn.MaxPool2d(2, 2, ceil_mode=item == "C"))
        else:
            layers += [nn.Conv2d(channels, item, 3, padding=1), nn.ReLU(inplace=True)]
            channels = item
    fc6 = nn.Conv2d(channels, 1024, 3, padding=6, dilation=6)
    fc7 = nn.Conv2d(1024, 1024, 1)
    return nn.ModuleList([*layers, fc6, nn.ReLU(inplace=True), fc7, nn.ReLU(inplace=True)])


class S3FDNet(nn.Module):
    """`forward(x [B, 3, H, W]) -> (loc [B, P, 4], logits [B, P, 2], map sizes [(h, w)] * 6)`, priors in the
    order of the maps, then rows, then columns (what `prior_boxes` builds)."""

    def __init__(self) -> None:
        super().__init__()
        self.vgg = _vgg()
        for name, (channels, scale) in NORM_SCALES.items():
            setattr(self, name, L2Norm(channels, scale))
        self.extras = nn.ModuleList(
            [
                nn.Conv2d(1024, 256, 1),
                nn.Conv2d(256, 512, 3, 2, 1),
                nn.Conv2d(512, 128, 1),
                nn.Conv2d(128, 256, 3, 2, 1),
            ]
        )
        self.loc = nn.ModuleList(nn.Conv2d(c, 4, 3, padding=1) for c in SOURCE_CHANNELS)
        classes = [MAXOUT_BACKGROUND + 1] + [2] * (len(SOURCE_CHANNELS) - 1)
        self.conf = nn.ModuleList(nn.Conv2d(c, k, 3, padding=1) for c, k in zip(SOURCE_CHANNELS, classes))

    def sources(self, x: Tensor) -> list[Tensor]:
        """The six source maps (module docstring)."""
        out, start = [], 0
        for end, norm in zip(NORMED_SOURCE_ENDS, NORM_SCALES):
            for layer in self.vgg[start:end]:
                x = layer(x)
            out.append(getattr(self, norm)(x))
            start = end
        for layer in self.vgg[start:]:
            x = layer(x)
        out.append(x)  # fc7
        for index, layer in enumerate(self.extras):
            x = F.relu(layer(x))
            if index % 2 == 1:  # conv6_2, conv7_2
                out.append(x)
        return out

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, list[tuple[int, int]]]:
        locs, logits, sizes = [], [], []
        for index, source in enumerate(self.sources(x)):
            conf = self.conf[index](source)  # [B, K, h, w]
            if index == 0:  # max-out background: the best of the three background scores, then the face score
                conf = torch.cat([conf[:, :MAXOUT_BACKGROUND].amax(dim=1, keepdim=True), conf[:, -1:]], dim=1)
            locs.append(self.loc[index](source).permute(0, 2, 3, 1).flatten(1, 2))  # [B, h * w, 4]
            logits.append(conf.permute(0, 2, 3, 1).flatten(1, 2))  # [B, h * w, 2]
            sizes.append((source.shape[2], source.shape[3]))
        return torch.cat(locs, 1), torch.cat(logits, 1), sizes


def prior_boxes(height: int, width: int, sizes: list[tuple[int, int]]) -> np.ndarray:
    """float64 [P, 4] prior boxes (centre x, centre y, width, height), relative to an input of height x width."""
    boxes = []
    for (rows, cols), step, side in zip(sizes, STEPS, MIN_SIZES):
        cy, cx = np.meshgrid(
            (np.arange(rows) + 0.5) * step / height, (np.arange(cols) + 0.5) * step / width, indexing="ij"
        )
        shape = np.broadcast_to([side / width, side / height], (rows * cols, 2))
        boxes.append(np.concatenate([np.stack([cx.ravel(), cy.ravel()], 1), shape], 1))
    return np.concatenate(boxes)


def decode(loc: np.ndarray, priors: np.ndarray, variances: tuple[float, float] = VARIANCES) -> np.ndarray:
    """Corner boxes [P, 4] (x0, y0, x1, y1) from box offsets [P, 4] and priors [P, 4] (centre, size)."""
    centre = priors[:, :2] + loc[:, :2] * variances[0] * priors[:, 2:]
    size = priors[:, 2:] * np.exp(loc[:, 2:] * variances[1])
    return np.concatenate([centre - size / 2, centre + size / 2], 1)


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, top_k: int = 0) -> np.ndarray:
    """Indices of the boxes kept by greedy non-maximum suppression, best first: a box is dropped when its IoU
    (areas without the +1 pixel convention) with a kept, better box is above `threshold`. With `top_k`, only the
    `top_k` best boxes take part."""
    order = np.argsort(-scores, kind="stable")
    if top_k:
        order = order[:top_k]
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(best)
        low, high = np.maximum(boxes[best, :2], boxes[rest, :2]), np.minimum(boxes[best, 2:], boxes[rest, 2:])
        inter = np.prod(np.clip(high - low, 0, None), axis=1)
        order = rest[inter / (area[best] + area[rest] - inter) <= threshold]
    return np.asarray(keep, dtype=np.int64)


def select_faces(
    loc: np.ndarray, logits: np.ndarray, priors: np.ndarray, width: int, height: int, confidence: float
) -> np.ndarray:
    """float64 [n, 5] faces (x0, y0, x1, y1 in pixels of a width x height frame, score) of one image's head
    outputs, best first: candidates, first suppression, confidence, pixels, final suppression (module
    docstring)."""
    logits = logits.astype(np.float64)
    face = np.exp(logits[:, 1] - np.logaddexp(logits[:, 0], logits[:, 1]))  # softmax probability of "face"
    candidates = np.flatnonzero(face > CANDIDATE_THRESHOLD)
    boxes = decode(loc[candidates].astype(np.float64), priors[candidates])
    kept = nms(boxes, face[candidates], FIRST_NMS, CANDIDATE_TOP_K)[:KEEP_TOP_K]
    kept = kept[face[candidates][kept] > confidence]
    faces = np.concatenate([boxes[kept] * [width, height, width, height], face[candidates][kept, None]], 1)
    return faces[nms(faces[:, :4], faces[:, 4], FINAL_NMS)] if len(faces) else faces.reshape(0, 5)


def load_s3fd(path: str | os.PathLike) -> S3FDNet:
    """S3FDNet with the weights of syncnet_python's `sfd_face.pth` (a state dict), frozen, loaded strictly: a file
    that is not a state dict, or one with a missing, unexpected or wrongly shaped key, raises ValueError naming
    them."""
    net = load_state_dict_checked(S3FDNet(), read_state_dict(Path(path)), path)
    return net.eval().requires_grad_(False)


class S3FDDetector:
    """Faces in RGB frames as syncnet_python's run_pipeline.py finds them (module docstring)."""

    def __init__(
        self,
        net: S3FDNet,
        scale: float = SCALE,
        confidence: float = CONFIDENCE,
        device: str = "cpu",
        batch_size: int = 8,
    ) -> None:
        self.device = torch.device(device)
        self.net = net.eval().to(self.device)
        self.scale, self.confidence, self.batch_size = scale, confidence, batch_size

    @torch.inference_mode()
    def detect(self, frames: np.ndarray) -> list[np.ndarray]:
        """float64 [n_t, 5] faces (x0, y0, x1, y1 in frame pixels, score) of every RGB uint8 frame [T, H, W, 3]."""
        height, width = frames.shape[1:3]
        if min(round(height * self.scale), round(width * self.scale)) < MIN_INPUT:
            raise ValueError(
                f"S3FD: {width} x {height} frames scaled by {self.scale:g} are smaller than {MIN_INPUT} px, "
                "too small for its five pooling stages (raise sync.s3fd_scale)"
            )
        out: list[np.ndarray] = []
        priors = None
        for start in range(0, len(frames), self.batch_size):
            small = [
                cv2.resize(f, (0, 0), fx=self.scale, fy=self.scale, interpolation=cv2.INTER_LINEAR)
                for f in frames[start : start + self.batch_size]
            ]
            x = torch.from_numpy(np.stack(small).astype(np.float32) - MEAN_RGB).permute(0, 3, 1, 2)
            loc, logits, sizes = self.net(x.to(self.device))
            if priors is None:
                priors = prior_boxes(x.shape[2], x.shape[3], sizes)
            loc, logits = loc.cpu().numpy(), logits.cpu().numpy()
            out += [select_faces(b, c, priors, width, height, self.confidence) for b, c in zip(loc, logits)]
        return out

    def boxes(self, frames: np.ndarray) -> list[np.ndarray]:
        """Corner boxes [n_t, 4] of the faces of every RGB frame (`detect` without the scores)."""
        return [faces[:, :4] for faces in self.detect(frames)]
