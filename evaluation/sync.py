"""Sync-C / Sync-D / AV offset as syncnet_python computes them (DESIGN §6, §7), from the video file.

Two protocols (`sync.protocol`):
- `syncnet_python` (default), for raw full-frame videos, reproducing `run_pipeline.py` + `SyncNetInstance.py`:
  1. the video goes through the reference's files: `ffmpeg -i VIDEO -qscale:v 2 -async 1 -r 25 video.avi`, then
     `ffmpeg -i video.avi -qscale:v 2 -f image2 %06d.jpg`, frames read back with `cv2.imread`;
  2. faces detected on every frame (`sync.detector`: S3FD as syncnet_python runs it,
     `moda_train.perception.s3fd`, when its weights are given or found; else mediapipe, the framework's offline
     detector), tracked, median-filtered and cropped with syncnet_python's geometry
     (`moda_train.perception.face_track`);
  3. each track's 224 px crops written to an XVID avi by `cv2.VideoWriter` (as `crop_video` does), then re-read
     through `ffmpeg -i crop.avi -f image2 %06d.jpg` (ffmpeg's default JPEG quality, as `SyncNetInstance.evaluate`
     does) and `cv2.imread` (BGR, raw 0..255);
  4. audio: `ffmpeg -i AUDIO -ac 1 -vn -acodec pcm_s16le -ar 16000 audio.wav`, read as int16 by
     `scipy.io.wavfile` and cut to the track's frames [first * 640, (last + 1) * 640);
  the longest track is scored (`tracks` in the per-video values says how many there were).
- `whole_frame`: the video already is a face-crop video (what syncnet_python's tracker writes): its frames are
  read as `SyncNetInstance.evaluate` reads one (`ffmpeg -i VIDEO -f image2 %06d.jpg`, default JPEG quality), scaled
  to 224 x 224 by ffmpeg's bilinear scaler when they are not that size; audio as in step 4, the whole of it.
The ffmpeg is the one imageio-ffmpeg ships (`moda_train.perception.audio`), so no system ffmpeg is needed.

Scoring (`score_crops`): MFCC by `python_speech_features.mfcc(int16 audio, 16000)` with its defaults (13
coefficients, 25 ms window, 10 ms hop: 4 MFCC frames per video frame); window i = video frames i..i+4 and MFCC
frames 4i..4i+19 for i in 0..min(T, samples // 640) - 6; the offset search is `moda_train.core.sync_offsets`
(Sync-D = min mdist, Sync-C = median - min, offset = vshift - argmin; positive: the video lags the audio).
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import python_speech_features
import torch
from scipy.io import wavfile

from evaluation.syncnet import SyncNet
from moda_train.core.rates import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME
from moda_train.core.sync_offsets import SyncResult, sync_from_embeddings
from moda_train.core.weights import resolve_weights
from moda_train.perception import s3fd
from moda_train.perception.config import FaceConfig
from moda_train.perception.face_track import CROP_SIZE, Track, crop_track, track_faces

MFCC_PER_FRAME = 4
WINDOW = 5  # video frames per SyncNet window (20 MFCC frames)

FaceBoxes = Callable[[np.ndarray], list[np.ndarray]]
"""A face detector for the syncnet_python protocol: RGB uint8 frames [T, H, W, 3] -> corner boxes [n_t, 4]."""

# What this implementation still does differently from syncnet_python, written into metrics.json; the first
# entry depends on the face detector (`differences`).
DETECTOR_DIFFERENCES = {
    "mediapipe": "faces detected by mediapipe face detection, not S3FD (conf 0.9 at 0.25 scale): boxes differ in "
    "size and position, so crops differ slightly",
    "s3fd": "faces detected by S3FD as run_pipeline.py runs it, but box decoding and both non-maximum "
    "suppressions run in float64 numpy (decoding and the first suppression are float32 torch there) and frames go "
    "through the network in batches: scores and boxes can differ at float round-off",
}
DIFFERENCES = {
    "syncnet_python": [
        "no scene-cut detection (PySceneDetect): every clip is taken as one shot",
        "a track takes at most one face per frame (syncnet_python can add two overlapping boxes of one frame)",
        "only the longest face track of a video is scored",
        "audio is read from the given audio file; syncnet_python reads it from its intermediate video.avi, whose "
        "audio ffmpeg re-encodes with the avi muxer's default (lossy) audio codec",
        "cv2.VideoWriter's XVID encoder and ffmpeg's JPEG encoder are the installed opencv and imageio-ffmpeg "
        "builds, whose versions may differ from the reference's",
    ],
    "whole_frame": [
        "no face detection or tracking: the whole frame, resized to 224 px, is taken as syncnet_python's crop",
        "the frames are not re-encoded to XVID first (as syncnet_python's own crop videos are); frames that are "
        "not 224 px are scaled by ffmpeg's bilinear scaler",
    ],
}


def _ffmpeg(*args: str) -> None:
    from moda_train.perception.audio import _ffmpeg_exe

    proc = subprocess.run([_ffmpeg_exe(), "-nostdin", "-v", "error", "-y", *args], capture_output=True)
    if proc.returncode != 0:
        raise ValueError(f"ffmpeg {' '.join(args)} failed: {proc.stderr.decode(errors='replace').strip()}")


def _read_jpegs(folder: Path) -> np.ndarray:
    files = sorted(folder.glob("*.jpg"))
    if not files:
        raise ValueError(f"ffmpeg wrote no frames into {folder}")
    return np.stack([cv2.imread(str(f)) for f in files])


def reference_frames(video: str | Path, max_frames: int = 0) -> np.ndarray:
    """BGR uint8 [T, H, W, 3] frames as syncnet_python's run_pipeline.py reads them (mpeg4 q2 avi, q2 JPEGs)."""
    with tempfile.TemporaryDirectory() as tmp:
        avi = Path(tmp) / "video.avi"
        _ffmpeg("-i", str(video), "-qscale:v", "2", "-async", "1", "-r", str(FPS), str(avi))
        limit = ["-frames:v", str(max_frames)] if max_frames else []
        _ffmpeg("-i", str(avi), "-qscale:v", "2", "-threads", "1", *limit, "-f", "image2", f"{tmp}/%06d.jpg")
        return _read_jpegs(Path(tmp))


def reference_audio(path: str | Path) -> np.ndarray:
    """int16 [N] 16 kHz mono audio as syncnet_python reads it (ffmpeg to pcm_s16le wav, scipy.io.wavfile)."""
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "audio.wav"
        _ffmpeg(
            "-i", str(path), "-async", "1", "-ac", "1", "-vn", "-acodec", "pcm_s16le", "-ar", "16000", str(wav)
        )
        rate, audio = wavfile.read(wav)
    if rate != SAMPLE_RATE or audio.dtype != np.int16:
        raise ValueError(f"{path}: ffmpeg gave {audio.dtype} audio at {rate} Hz, expected int16 at {SAMPLE_RATE}")
    return audio


def crop_video_round_trip(crops: np.ndarray) -> np.ndarray:
    """224 px BGR crops through the reference's files: XVID avi by cv2.VideoWriter, then ffmpeg's default JPEG."""
    with tempfile.TemporaryDirectory() as tmp:
        avi = str(Path(tmp) / "crop.avi")
        writer = cv2.VideoWriter(avi, cv2.VideoWriter_fourcc(*"XVID"), FPS, (CROP_SIZE, CROP_SIZE))
        if not writer.isOpened():
            raise ValueError("this OpenCV build cannot write XVID video (needed by sync.protocol=syncnet_python)")
        for crop in crops:
            writer.write(np.ascontiguousarray(crop))
        writer.release()
        # SyncNetInstance.evaluate: ffmpeg image2 JPEGs at ffmpeg's default quality (no -qscale), cv2.imread.
        out = Path(tmp) / "frames"
        out.mkdir()
        _ffmpeg("-i", avi, "-threads", "1", "-f", "image2", f"{out}/%06d.jpg")
        return _read_jpegs(out)


def whole_frame_crops(video: str | Path, max_frames: int = 0) -> np.ndarray:
    """`whole_frame` protocol: the video's frames as `SyncNetInstance.evaluate` reads a crop video (ffmpeg
    image2 JPEGs at its default quality, cv2.imread), scaled to 224 x 224 by ffmpeg's bilinear scaler if needed."""
    limit = ["-frames:v", str(max_frames)] if max_frames else []
    with tempfile.TemporaryDirectory() as tmp:
        scale = ["-vf", f"scale={CROP_SIZE}:{CROP_SIZE}:flags=bilinear"]
        _ffmpeg("-i", str(video), *scale, "-threads", "1", *limit, "-f", "image2", f"{tmp}/%06d.jpg")
        return _read_jpegs(Path(tmp))


def mfcc(audio: np.ndarray) -> np.ndarray:
    """MFCC [13, M] of 16 kHz int16 audio, as syncnet_python computes it (python_speech_features defaults)."""
    if audio.dtype != np.int16:
        raise ValueError(f"expected int16 audio (as syncnet_python reads wav files), got {audio.dtype}")
    return python_speech_features.mfcc(audio, SAMPLE_RATE).T


def num_windows(num_frames: int, num_samples: int) -> int:
    """Windows syncnet_python scores for a video of num_frames and num_samples of 16 kHz audio."""
    return max(min(num_frames, num_samples // SAMPLES_PER_FRAME) - WINDOW, 0)


class SyncScorer:
    """`scorer.score_crops(crops uint8 [T, 224, 224, 3] BGR, audio int16 [N] 16 kHz) -> SyncResult`."""

    def __init__(self, net: SyncNet, vshift: int = 15, batch_size: int = 20, device: str = "cpu") -> None:
        self.net, self.vshift, self.batch_size = net.eval(), vshift, batch_size
        self.device = torch.device(device)

    @torch.inference_mode()
    def score_crops(self, crops: np.ndarray, audio: np.ndarray) -> SyncResult:
        """Sync scores of SyncNet-ready crops (already through the JPEG round trip) against int16 audio."""
        count = num_windows(len(crops), len(audio))
        if count < 1:
            raise ValueError(f"too short for SyncNet: {len(crops)} frames, {len(audio)} audio samples")
        if crops.shape[1:] != (CROP_SIZE, CROP_SIZE, 3):
            raise ValueError(f"expected crops [T, {CROP_SIZE}, {CROP_SIZE}, 3], got {crops.shape}")
        video = torch.from_numpy(crops).permute(3, 0, 1, 2).float()  # [3, T, 224, 224] BGR
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


def chosen_detector(detector: str, s3fd_weights: str) -> str:
    """`sync.detector` resolved to `s3fd` or `mediapipe`: `auto` is S3FD when its weights file is found (the
    config's `sync.s3fd_weights`, else $MODA_S3FD_PATH, else weights/sfd_face.pth), else mediapipe."""
    if detector != "auto":
        return detector
    path = resolve_weights("s3fd", s3fd_weights)
    return "s3fd" if path is not None and path.is_file() else "mediapipe"


def differences(
    protocol: str, detector: str, scale: float = s3fd.SCALE, confidence: float = s3fd.CONFIDENCE
) -> list[str]:
    """What `protocol` (with `detector`, for syncnet_python) still does differently from syncnet_python."""
    if protocol != "syncnet_python":
        return DIFFERENCES[protocol]
    found = [DETECTOR_DIFFERENCES[detector]]
    if detector == "s3fd" and (scale, confidence) != (s3fd.SCALE, s3fd.CONFIDENCE):
        found.append(
            f"S3FD at scale {scale:g} and confidence {confidence:g} (run_pipeline.py: {s3fd.SCALE:g}, "
            f"{s3fd.CONFIDENCE:g})"
        )
    return found + DIFFERENCES[protocol]


def longest_track(
    frames: np.ndarray, detect: FaceBoxes, min_track: int, min_face_size: float
) -> tuple[Track, int]:
    """The longest syncnet_python face track of BGR frames and how many tracks there were (ValueError: none)."""
    boxes = detect(np.ascontiguousarray(frames[..., ::-1]))
    tracks = track_faces(boxes, min_track=min_track, min_face_size=min_face_size)
    if not tracks:
        raise ValueError(
            f"no face track of more than {min_track} frames with faces above {min_face_size:g} px "
            f"in {len(frames)} frames (sync.min_track, sync.min_face_size)"
        )
    return max(tracks, key=lambda t: len(t.frames)), len(tracks)


def score_track(scorer: SyncScorer, frames: np.ndarray, track: Track, audio: np.ndarray) -> SyncResult:
    """Crop a track like syncnet_python, round-trip it through its files and score it against its audio span."""
    crops = crop_video_round_trip(crop_track(frames, track))
    span = audio[track.frames[0] * SAMPLES_PER_FRAME : (track.frames[-1] + 1) * SAMPLES_PER_FRAME]
    return scorer.score_crops(crops, span)


def score_video(
    scorer: SyncScorer,
    video: str | Path,
    audio: str | Path,
    protocol: str = "syncnet_python",
    max_frames: int = 0,
    detect: FaceBoxes | None = None,
    min_track: int = 100,
    min_face_size: float = 100.0,
) -> tuple[SyncResult, dict]:
    """Sync scores of a video file against an audio file under `protocol` (module docstring), plus what the
    protocol found (`tracks`, `track_frames`, `track_start`); ValueError when there is nothing to score.
    `detect` finds the faces of the syncnet_python protocol (required there)."""
    samples = reference_audio(audio)
    if protocol == "whole_frame":
        return scorer.score_crops(whole_frame_crops(video, max_frames), samples), {}
    if protocol != "syncnet_python":
        raise ValueError(f"unknown sync protocol {protocol!r}: choose syncnet_python or whole_frame")
    if detect is None:
        raise ValueError("sync.protocol=syncnet_python needs a face detector")
    frames = reference_frames(video, max_frames)
    track, count = longest_track(frames, detect, min_track, min_face_size)
    info = {"tracks": count, "track_frames": len(track.frames), "track_start": int(track.frames[0])}
    return score_track(scorer, frames, track, samples), info


def detector_description(detector: str, confidence: float, scale: float = s3fd.SCALE) -> str:
    """What metrics.json records as the face detector of the syncnet_python protocol (`detector` resolved by
    `chosen_detector`; `confidence` is that detector's threshold)."""
    if detector == "s3fd":
        return (
            f"s3fd (syncnet_python's sfd_face.pth; frames scaled by {scale:g}, face probability > {confidence:g}, "
            f"suppression at IoU {s3fd.FIRST_NMS:g} then {s3fd.FINAL_NMS:g}), every frame"
        )
    face = FaceConfig(min_confidence=confidence)
    return (
        f"mediapipe face_detection (model_selection={face.model_selection}, min_detection_confidence="
        f"{face.min_confidence:g}, frames downscaled to at most {face.detect_max_side} px), every frame"
    )
