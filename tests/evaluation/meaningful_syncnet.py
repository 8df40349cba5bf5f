"""A SyncNet (syncnet_python's layer layout) whose embeddings mean something, for tests of the sync protocol.

Stimulus: a "face" whose brightness follows a random per-frame signal s[t] in [0, 1], and white noise whose
amplitude follows exp(3 s[t]): loudness and picture move together, frame by frame.

Network, built by hand and then fitted:
- lip tower: the first conv averages frame j of the 5-frame window into channel j, every later conv passes
  channels 0..4 through its centre tap and the last conv averages the 6 x 6 map, so its 512 outputs start with the
  5 frame brightnesses (all BatchNorms are identities in eval mode);
- audio tower: channel 0 carries the MFCC map (+50, to stay positive through the ReLUs); the two max-pools keep
  the loudest of coefficients 0..4 (log energy dominates for noise) in 4 time cells, and the last conv reads the
  4 cells of row 0: 4 loudness features per window;
- heads: the audio head passes those 4 features through, centred, plus a constant 3 in dimension 4 (so the zero
  padding of the offset search lies about as far away as a wrong offset, as with real SyncNet embeddings); the
  video head is a random ReLU layer on the 5 brightnesses whose last linear layer is fitted by ridge regression to
  predict the audio features of the same window, on a long training stimulus (seed 1).
Tests then use other seeds, so the fit is checked on held-out clips.
"""

from __future__ import annotations

import numpy as np
import torch

from evaluation.sync import mfcc, num_windows
from evaluation.syncnet import SyncNet

AUDIO_BIAS = 50.0
PAD_DISTANCE = 3.0
HIDDEN = 512


def stimulus(seed: int, frames: int) -> tuple[np.ndarray, np.ndarray]:
    """BGR uint8 crops [frames, 224, 224, 3] and int16 audio [frames * 640] that move together (module doc)."""
    rng = np.random.default_rng(seed)
    signal = rng.uniform(0.0, 1.0, frames)
    crops = np.broadcast_to((60 + 150 * signal).astype(np.uint8)[:, None, None, None], (frames, 224, 224, 3))
    amplitude = np.repeat(300.0 * np.exp(3.0 * signal), 640)
    audio = np.clip(np.rint(rng.standard_normal(frames * 640) * amplitude), -32768, 32767).astype(np.int16)
    return np.ascontiguousarray(crops), audio


def _constructed_towers() -> SyncNet:
    net = SyncNet().eval()
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        for m in net.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.weight.fill_(1.0)
                m.running_mean.zero_()
                m.running_var.fill_(1.0)
        lip, aud = net.netcnnlip, net.netcnnaud
        for j in range(5):
            lip[0].weight[j, :, j] = 1.0 / (3 * 49)
            lip[4].weight[j, j, 0, 2, 2] = 1.0
            for i in (8, 11, 14):
                lip[i].weight[j, j, 0, 1, 1] = 1.0
            lip[18].weight[j, j, 0] = 1.0 / 36
        aud[0].weight[0, 0, 1, 1] = 1.0
        aud[0].bias[0] = AUDIO_BIAS
        for i in (4, 8, 11, 14):
            aud[i].weight[0, 0, 1, 1] = 1.0
        for k in range(4):
            aud[18].weight[k, 0, 0, k] = 1.0
            net.netfcaud[0].weight[k, k] = 1.0
    return net


@torch.no_grad()
def _audio_features(net: SyncNet, audio: np.ndarray, count: int) -> np.ndarray:
    cepstra = torch.from_numpy(mfcc(audio)).float()
    windows = torch.stack([cepstra[None, :, 4 * i : 4 * i + 20] for i in range(count)])
    return net.netfcaud[:3](net.netcnnaud(windows).flatten(1))[:, :4].double().numpy()


def meaningful_syncnet(train_frames: int = 1500, ridge: float = 1e-3) -> SyncNet:
    """The network of the module docstring, fitted on the seed-1 stimulus."""
    net = _constructed_towers()
    crops, audio = stimulus(1, train_frames)
    count = num_windows(train_frames, len(audio))
    target = _audio_features(net, audio, count)  # [n, 4]
    # The lip tower gives the window's 5 brightnesses (scaled by the BatchNorms' 1/sqrt(1 + eps)); computing it
    # on 1500 windows would take minutes, so the same numbers are formed directly.
    scale = 1.0 / np.sqrt(1.0 + net.netcnnlip[1].eps) ** 6
    brightness = crops[:, 0, 0, 0].astype(np.float64)
    inputs = np.stack([brightness[i : i + 5] for i in range(count)]) * scale  # [n, 5]
    g = torch.Generator().manual_seed(0)
    weight = torch.randn(HIDDEN, 5, generator=g, dtype=torch.float64) / inputs.std()
    bias = torch.randn(HIDDEN, generator=g, dtype=torch.float64) - weight @ torch.from_numpy(inputs.mean(0))
    hidden = torch.relu(torch.from_numpy(inputs) @ weight.T + bias).numpy() / np.sqrt(1.0 + 1e-5)
    design = np.c_[hidden, np.ones(count)]
    coef = np.linalg.solve(design.T @ design + ridge * np.eye(HIDDEN + 1), design.T @ target)  # [513, 4]
    mean = torch.from_numpy(target.mean(0)).float()
    with torch.no_grad():
        head_v, head_a = net.netfclip, net.netfcaud
        head_v[0].weight.zero_()
        head_v[0].weight[:, :5] = weight.float()
        head_v[0].bias.copy_(bias.float())
        head_v[3].weight[:4] = torch.from_numpy(coef[:HIDDEN].T).float()
        head_v[3].bias[:4] = torch.from_numpy(coef[HIDDEN]).float() - mean
        head_a[3].weight[:4, :4] = torch.eye(4)
        head_a[3].bias[:4] = -mean
        head_v[3].bias[4] = head_a[3].bias[4] = PAD_DISTANCE
    return net
