"""Sync-C / Sync-D / offset: the offset search against constructed embeddings, and the SyncNet front end."""

import numpy as np
import pytest
import torch

from evaluation.sync import SyncScorer, mfcc, num_windows, sync_from_embeddings
from evaluation.syncnet import SyncNet


def _audio_embeddings(n: int = 60, dim: int = 32) -> torch.Tensor:
    # A common offset vector keeps every real embedding far from the zero padding, as trained SyncNet features are.
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, dim, generator=g) + 4.0


def _reference_mdist(video: torch.Tensor, audio: torch.Tensor, vshift: int) -> np.ndarray:
    # Written independently of the implementation: explicit loops over windows and offsets.
    video, audio = video.double().numpy(), audio.double().numpy()
    n = len(video)
    mdist = np.zeros(2 * vshift + 1)
    for k in range(2 * vshift + 1):
        total = 0.0
        for i in range(n):
            j = i + k - vshift
            other = audio[j] if 0 <= j < n else np.zeros(audio.shape[1])
            total += np.linalg.norm(video[i] - other)
        mdist[k] = total / n
    return mdist


@pytest.mark.parametrize("shift", [-12, -3, 0, 5, 10])
def test_video_shifted_by_k_frames_gives_offset_k(shift):
    audio = _audio_embeddings()
    video = torch.roll(audio, shift, dims=0)  # video window i shows what audio window i - shift says
    result = sync_from_embeddings(video, audio, vshift=15)
    assert result.offset == shift


def test_sync_c_and_sync_d_follow_the_formulas():
    audio = _audio_embeddings()
    g = torch.Generator().manual_seed(1)
    video = torch.roll(audio, 3, dims=0) + 0.3 * torch.randn(audio.shape, generator=g)
    result = sync_from_embeddings(video, audio, vshift=15)
    mdist = _reference_mdist(video, audio, 15)
    np.testing.assert_allclose(result.mdist, mdist, rtol=1e-9)
    assert result.sync_d == pytest.approx(mdist.min())
    assert result.sync_c == pytest.approx(np.median(mdist) - mdist.min())  # 31 offsets: the median is one value
    assert result.offset == 15 - int(np.argmin(mdist)) == 3
    assert result.windows == 60


def test_embedding_shapes_are_checked():
    with pytest.raises(ValueError, match="equal shape"):
        sync_from_embeddings(torch.zeros(5, 8), torch.zeros(6, 8))


def test_mfcc_gives_13_coefficients_and_4_frames_per_video_frame():
    rng = np.random.default_rng(0)
    cepstra = mfcc(rng.uniform(-0.5, 0.5, 16000).astype(np.float32))  # one second = 25 video frames
    assert cepstra.shape[0] == 13
    assert cepstra.shape[1] in (99, 100)


def test_window_count_is_syncnet_pythons():
    # min(frames, samples // 640) - 5: the last possible window is left out, as in syncnet_python.
    assert num_windows(50, 50 * 640) == 45
    assert num_windows(50, 30 * 640 + 100) == 25
    assert num_windows(4, 16000) == 0


@pytest.mark.slow
def test_scorer_runs_random_init_syncnet_deterministically():
    torch.manual_seed(0)
    scorer = SyncScorer(SyncNet().eval(), vshift=15, batch_size=8)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (14, 48, 48, 3), dtype=np.uint8)  # resized to 224 inside
    audio = rng.uniform(-0.3, 0.3, 14 * 640).astype(np.float32)
    first, second = scorer(frames, audio), scorer(frames, audio)
    assert first == second
    assert first.windows == 9 and -15 <= first.offset <= 15 and len(first.mdist) == 31
    assert first.sync_c >= 0 and first.sync_d > 0
    with pytest.raises(ValueError, match="too short"):
        scorer(frames[:5], audio)
