"""Sync-C / Sync-D / offset: the offset search on constructed embeddings, syncnet_python's tracking and crop on a
raw video, and a SyncNet whose embeddings carry meaning (tests/evaluation/meaningful_syncnet.py)."""

import cv2
import numpy as np
import pytest
import torch
from scipy.signal import medfilt

from evaluation.sync import (
    SyncScorer,
    crop_video_round_trip,
    mfcc,
    num_windows,
    reference_audio,
    reference_frames,
    score_video,
    sync_from_embeddings,
)
from moda_train.perception.config import FaceConfig
from moda_train.perception.face_track import detect_faces, track_faces
from tests.evaluation.meaningful_syncnet import meaningful_syncnet, stimulus


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


def test_mfcc_takes_int16_audio_with_13_coefficients_and_4_frames_per_video_frame():
    rng = np.random.default_rng(0)
    audio = rng.integers(-8000, 8000, 16000).astype(np.int16)  # one second = 25 video frames
    cepstra = mfcc(audio)
    assert cepstra.shape[0] == 13
    assert cepstra.shape[1] in (99, 100)
    with pytest.raises(ValueError, match="int16"):
        mfcc(audio.astype(np.float32) / 32768)


def test_window_count_is_syncnet_pythons():
    # min(frames, samples // 640) - 5: the last possible window is left out, as in syncnet_python.
    assert num_windows(50, 50 * 640) == 45
    assert num_windows(50, 30 * 640 + 100) == 25
    assert num_windows(4, 16000) == 0


@pytest.fixture(scope="module")
def meaningful_scorer():
    return SyncScorer(meaningful_syncnet(), vshift=15, batch_size=32)


@pytest.mark.slow
def test_meaningful_network_finds_the_audio_shift_and_scores_it_lower(meaningful_scorer):
    crops, audio = stimulus(seed=2, frames=30)  # held out: the network was fitted on seed 1
    aligned = meaningful_scorer.score_crops(crops, audio)
    assert aligned.offset == 0
    for k in (3, -3):
        # Audio delayed by k frames (k < 0: advanced): the video leads, so syncnet_python reports offset -k.
        shifted = meaningful_scorer.score_crops(crops, np.roll(audio, k * 640))
        assert shifted.offset == -k
        assert shifted.sync_c < aligned.sync_c and shifted.sync_d > aligned.sync_d
    with pytest.raises(ValueError, match="too short"):
        meaningful_scorer.score_crops(crops[:5], audio)


def test_track_faces_follows_syncnet_pythons_rules():
    box = np.array([[100.0, 100.0, 200.0, 220.0]])
    far = np.array([[300.0, 300.0, 400.0, 420.0]])
    # frames 0..119 one face, with a 10-frame gap (bridged: <= 25) and a second, far face on frames 0..49
    detections = [np.concatenate([box + t * 0.5] + ([far] if t < 50 else [])) for t in range(120)]
    for t in range(60, 70):
        detections[t] = np.zeros((0, 4))
    tracks = track_faces(detections, min_track=100, min_face_size=100)
    assert len(tracks) == 1  # the far face's 50 detections are too few
    track = tracks[0]
    np.testing.assert_array_equal(track.frames, np.arange(120))
    np.testing.assert_allclose(track.boxes[65], box[0] + 65 * 0.5)  # interpolated over the gap
    assert track_faces(detections, min_track=100, min_face_size=130) == []  # mean box 100 x 120 px
    assert track_faces(detections, min_track=110, min_face_size=100) == []  # 110 detections are not > 110


def _hand_made_crop(frame: np.ndarray, x: float, y: float, s: float) -> np.ndarray:
    # syncnet_python's crop_video, written out again: pad by int(s * 1.8) grey pixels, cut, resize.
    pad = int(s * 1.8)
    padded = np.full((frame.shape[0] + 2 * pad, frame.shape[1] + 2 * pad, 3), 110, np.uint8)
    padded[pad : pad + frame.shape[0], pad : pad + frame.shape[1]] = frame
    face = padded[int(y + pad - s) : int(y + pad + 1.8 * s), int(x + pad - 1.4 * s) : int(x + pad + 1.4 * s)]
    return cv2.resize(face, (224, 224))


@pytest.mark.slow
def test_raw_video_gives_the_scores_of_hand_made_reference_crops(tmp_path, meaningful_scorer):
    from data_prep.demo_corpus import build_corpus

    (video,) = build_corpus(tmp_path, num_videos=1, num_speakers=1, seconds=2.0, workers=1, progress=False)
    frames_used, min_track = 40, 30
    mediapipe = lambda frames: detect_faces(frames, FaceConfig())  # noqa: E731
    result, info = score_video(
        meaningful_scorer, video, video, "syncnet_python", frames_used, mediapipe, min_track, 100
    )
    assert info["tracks"] == 1 and info["track_frames"] == frames_used

    # By hand: the reference's frames, one face per frame, medfilt(13) of centre and half side, the crop above.
    frames = reference_frames(video, frames_used)
    faces = detect_faces(np.ascontiguousarray(frames[..., ::-1]), FaceConfig())
    assert all(len(f) == 1 for f in faces)
    x0, y0, x1, y1 = np.concatenate(faces).T
    half = medfilt(np.maximum(x1 - x0, y1 - y0) / 2, 13)
    cx, cy = medfilt((x0 + x1) / 2, 13), medfilt((y0 + y1) / 2, 13)
    crops = np.stack([_hand_made_crop(f, *b) for f, b in zip(frames, np.stack([cx, cy, half], 1))])
    expected = meaningful_scorer.score_crops(crop_video_round_trip(crops), reference_audio(video)[: 640 * 40])
    assert result.offset == expected.offset
    assert result.sync_c == pytest.approx(expected.sync_c, abs=1e-3)
    assert result.sync_d == pytest.approx(expected.sync_d, abs=1e-3)


def test_reference_audio_is_int16_like_ffmpeg_pcm_s16le(tmp_path):
    from scipy.io import wavfile

    wave = (np.sin(np.arange(8000) / 5.0) * 20000).astype(np.int16)
    wavfile.write(tmp_path / "a.wav", 16000, wave)
    np.testing.assert_array_equal(reference_audio(tmp_path / "a.wav"), wave)
