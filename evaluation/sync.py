"""Sync-C / Sync-D / AV offset, exactly as syncnet_python computes them (DESIGN §6).

Front end: 16 kHz mono audio at int16 scale -> MFCC by `python_speech_features.mfcc` with its defaults (13
coefficients, 25 ms window, 10 ms hop, 26 filters, 512-point FFT, pre-emphasis 0.97, lifter 22, log energy as
coefficient 0): 4 MFCC frames per 25 fps video frame. Video: each frame resized to 224 x 224 (bilinear) as a face
crop, RGB -> BGR, raw 0..255 values. Window i: video frames i..i+4 and MFCC frames 4i..4i+19, for i in
0..min(T, samples // 640) - 6 (syncnet_python's range, which leaves the last possible window out).

Crop: our videos are already aligned face crops (MoDA's output, data_prep's crops), which is what syncnet_python's
face tracker produces before it resizes to 224; the whole frame is therefore SyncNet's face crop, and the lip tower
itself looks at the mouth region in its lower half. Videos that are not face crops must be cropped first.

Offset search (`moda_train.core.sync_offsets`, shared with the motion-space ALSE expert): audio embeddings
zero-padded by `vshift` on both sides; for every video window the Euclidean distance to the audio windows at
offsets -vshift..+vshift; mdist[k] = mean over windows; Sync-D = min(mdist), Sync-C = median(mdist) - min(mdist),
AV offset = vshift - argmin(mdist) (positive: the video lags the audio).
"""

from __future__ import annotations

import cv2
import numpy as np
import python_speech_features
import torch

from evaluation.syncnet import SyncNet
from moda_train.core.rates import SAMPLE_RATE, SAMPLES_PER_FRAME
from moda_train.core.sync_offsets import SyncResult, sync_from_embeddings

MFCC_PER_FRAME = 4
WINDOW = 5  # video frames per SyncNet window (20 MFCC frames)
FACE_SIZE = 224


def mfcc(audio: np.ndarray) -> np.ndarray:
    """MFCC [13, M] of 16 kHz float audio in [-1, 1] (scaled to int16 range, as syncnet_python reads wav files)."""
    return python_speech_features.mfcc(np.asarray(audio, np.float64) * 32768.0, SAMPLE_RATE).T


def num_windows(num_frames: int, num_samples: int) -> int:
    """Windows syncnet_python scores for a video of num_frames and num_samples of 16 kHz audio."""
    return max(min(num_frames, num_samples // SAMPLES_PER_FRAME) - WINDOW, 0)


class SyncScorer:
    """`scorer(frames uint8 [T, H, W, 3] RGB face crops, audio float32 [N] 16 kHz) -> SyncResult`."""

    def __init__(self, net: SyncNet, vshift: int = 15, batch_size: int = 20, device: str = "cpu") -> None:
        self.net, self.vshift, self.batch_size = net.eval(), vshift, batch_size
        self.device = torch.device(device)

    @torch.inference_mode()
    def __call__(self, frames: np.ndarray, audio: np.ndarray) -> SyncResult:
        count = num_windows(len(frames), len(audio))
        if count < 1:
            raise ValueError(f"too short for SyncNet: {len(frames)} frames, {len(audio)} audio samples")
        faces = np.stack([cv2.resize(f, (FACE_SIZE, FACE_SIZE), interpolation=cv2.INTER_LINEAR) for f in frames])
        video = torch.from_numpy(faces[..., ::-1].copy()).permute(3, 0, 1, 2).float()  # [3, T, 224, 224] BGR
        cepstra = torch.from_numpy(mfcc(audio)).float()  # [13, M]
        video_emb, audio_emb = [], []
        for start in range(0, count, self.batch_size):
            ids = range(start, min(count, start + self.batch_size))
            v = torch.stack([video[:, i : i + WINDOW] for i in ids])  # [B, 3, 5, 224, 224]
            a = torch.stack(
                [cepstra[None, :, MFCC_PER_FRAME * i : MFCC_PER_FRAME * (i + WINDOW)] for i in ids]
            )  # [B, 1, 13, 20]
            video_emb.append(self.net.forward_video(v.to(self.device)).cpu())
            audio_emb.append(self.net.forward_audio(a.to(self.device)).cpu())
        return sync_from_embeddings(torch.cat(video_emb), torch.cat(audio_emb), self.vshift)
