"""S3FD weights files in syncnet_python's released layout (`sfd_face.pth`) with random tensors, and an S3FD whose
last class layer is fitted so that it finds one known box in the frames of a given video.

Random VGG weights find nothing meaningful, so a test that only ran them would prove nothing about the
detection path. `fitted_s3fd` keeps the random network and fits the face row of `conf.1` (the conv4_3 class
head, stride 8) by least squares on the frames themselves: face logit +10 at one chosen cell of that map, -10 at
every other cell; every other class head says "background" (face logit -10 through its bias) and every box head
is zero, so a detection is exactly a prior box. At scale 0.25 the chosen cell's prior is a known square in the
frame's pixels (`fitted_box`): a detector that resizes, normalises, orders priors, decodes, thresholds or maps
back to pixels differently from syncnet_python finds another box or none.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from moda_train.perception.s3fd import MIN_SIZES, STEPS, S3FDNet

FITTED_SOURCE = 1  # conv4_3: stride 8, prior side 32 px in the resized frame
FITTED_CELL = (2, 2)  # (row, column) of that map (5 x 5 for a 160 px frame)
MARGIN = 10.0


def random_s3fd(seed: int = 0) -> S3FDNet:
    """S3FDNet with random weights: convolutions Kaiming-normal (so 16 ReLU layers keep a usable signal)."""
    torch.manual_seed(seed)
    net = S3FDNet()
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                module.bias.normal_(std=0.01)
    return net.eval()


def reference_input(frame_rgb: np.ndarray, scale: float = 0.25) -> torch.Tensor:
    """[1, 3, h, w] network input as syncnet_python's S3FD.detect_faces builds it, step by step: resize, HWC ->
    CHW, to BGR, minus the BGR mean (104, 117, 123), back to RGB."""
    small = cv2.resize(frame_rgb, dsize=(0, 0), fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
    chw = np.swapaxes(np.swapaxes(small, 1, 2), 1, 0)[[2, 1, 0]].astype(np.float32)
    chw -= np.array([104.0, 117.0, 123.0], np.float32)[:, None, None]
    return torch.from_numpy(np.ascontiguousarray(chw[[2, 1, 0]]))[None]


def fitted_box(frame_width: int, frame_height: int, scale: float = 0.25) -> np.ndarray:
    """The corner box (frame pixels) of the fitted cell's prior: centre (c + 0.5) * step / scale, side
    min_size / scale, written out from syncnet_python's PriorBox (exact when the resized size is the frame's
    times the scale)."""
    step, side = STEPS[FITTED_SOURCE], MIN_SIZES[FITTED_SOURCE]
    row, col = FITTED_CELL
    cx, cy = (col + 0.5) * step / scale, (row + 0.5) * step / scale
    half = side / scale / 2
    assert frame_width * scale == round(frame_width * scale) and frame_height * scale == round(
        frame_height * scale
    )
    return np.array([cx - half, cy - half, cx + half, cy + half])


@torch.no_grad()
def fitted_s3fd(frames_rgb: np.ndarray, seed: int = 0) -> S3FDNet:
    """The random S3FD of `seed` with its heads set as the module docstring says, fitted on these RGB frames."""
    net = random_s3fd(seed)
    for head in [*net.loc, *net.conf]:
        head.weight.zero_()
        head.bias.zero_()
    for index, head in enumerate(net.conf):
        if index != FITTED_SOURCE:
            head.bias[-1] = -MARGIN  # the face logit; background logits stay 0
    features = net.sources(torch.cat([reference_input(f) for f in frames_rgb]))[FITTED_SOURCE]  # [T, C, h, w]
    _, channels, rows, cols = features.shape
    patches = torch.nn.functional.unfold(features, 3, padding=1).double()  # [T, C * 9, h * w]
    x = patches.permute(0, 2, 1).reshape(-1, channels * 9)
    x = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], 1)
    target = torch.full((len(frames_rgb), rows, cols), -MARGIN, dtype=torch.float64)
    target[:, FITTED_CELL[0], FITTED_CELL[1]] = MARGIN
    # Minimum-norm least squares through the Gram matrix (more unknowns than cells, so the fitted logits equal the
    # targets; the tiny ridge only keeps the solve well-posed).
    gram = x @ x.T + 1e-8 * torch.eye(len(x), dtype=x.dtype)
    solution = x.T @ torch.linalg.solve(gram, target.reshape(-1))
    head = net.conf[FITTED_SOURCE]
    head.weight[1] = solution[:-1].reshape(channels, 3, 3).float()
    head.bias[1] = float(solution[-1])
    return net


def save_released(net: S3FDNet, path: Path) -> Path:
    """Save `net` as syncnet_python's sfd_face.pth is saved: a plain state dict."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), path)
    return path
