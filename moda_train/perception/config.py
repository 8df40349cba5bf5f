"""Settings of the perception steps shared by data preparation, generation and evaluation: face detection and
crop, motion extraction, audio features."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class FaceConfig:
    crop_size: int = 256
    """Side of the square face crops in pixels (the renderer and motion extractors expect 256)."""
    crop_scale: float = 1.8
    """Crop side relative to the larger side of the detected face box (room for hair, chin and head motion)."""
    detect_every: int = 5
    """Run face detection on every n-th output frame (25 fps / 5 = 5 detections per second)."""
    detect_max_side: int = 640
    """Frames are downscaled so their longer side is at most this before detection (4K input stays cheap)."""
    min_confidence: float = 0.5
    """Face detector score threshold."""
    model_selection: int = 1
    """mediapipe face detection model: 0 = short range (faces within ~2 m), 1 = full range (~5 m)."""
    secondary_face_ratio: float = 0.35
    """A second face counts only if its box is at least this fraction of the main face's width (ignores tiny
    faces in the background)."""
    max_missing_fraction: float = 0.2
    """Reject a clip when more than this fraction of detection frames has no face."""
    max_multi_face_fraction: float = 0.2
    """Reject a clip when more than this fraction of detection frames shows several faces."""
    smoothing_seconds: float = 1.0
    """Gaussian sigma (seconds) of the crop-box track: removes detector jitter but keeps head sway in the
    motion's translation; a very large value gives one fixed crop per clip."""


@dataclass
class MotionBackendConfig:
    backend: str = "landmarks"
    """Motion extractor (`moda_train.perception.motion.get_motion_extractor`): landmarks (offline, mediapipe
    FaceMesh) or liveportrait (needs its checkpoint path in options)."""
    options: dict[str, Any] = field(default_factory=dict)
    """Keyword options passed to the extractor, e.g. `{path: checkpoints/liveportrait}`."""
    chunk_frames: int = 250
    """Frames cropped and passed to the extractor at a time (with the reference frame prepended), which bounds
    memory for long clips."""
    max_invalid_fraction: float = 0.2
    """Reject a clip when the extractor finds no face in more than this fraction of its frames."""


@dataclass
class AudioBackendConfig:
    backend: str = "logmel"
    """Audio feature extractor (`moda_train.perception.audio.get_audio_extractor`): logmel (no weights) or hubert
    (local checkpoint path in options)."""
    options: dict[str, Any] = field(default_factory=dict)
    """Keyword options passed to the extractor, e.g. `{path: checkpoints/hubert-base-ls960}`."""
