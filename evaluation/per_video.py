"""Everything measured on one clip: features for the set metrics (FID, FVD) and per-video scores.

`VideoEvaluator(cfg, enabled).evaluate(clip)` returns a `VideoRecord`: JSON-able per-video values plus the
feature arrays the set metrics need. Networks are loaded on first use, once per process. Which metrics run is
decided before (weights present or not) and passed in as `enabled`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from evaluation.config import EvalConfig
from evaluation.diversity import sample_diversity, temporal_pose_spread
from evaluation.fid import InceptionFeatures
from evaluation.fsim import FaceEmbedder
from evaluation.fvd import I3DFeatures, fvd_clips, load_i3d
from evaluation.smoothness import frame_acceleration, motion_jerk
from evaluation.split import Clip
from evaluation.sync import FaceBoxes, SyncScorer, chosen_detector, score_video
from evaluation.syncnet import load_syncnet
from evaluation.video import evenly_spaced, has_audio, load_audio, read_video
from moda_train.alse_score import ALSEScorer
from moda_train.core.motion_layout import EMOTIONS, emotion_index
from moda_train.core.weights import resolve_weights
from moda_train.lit.emotion_module import EmotionLightningModule, load_classifier
from moda_train.perception.audio import get_audio_extractor
from moda_train.perception.config import FaceConfig
from moda_train.perception.face_track import detect_faces
from moda_train.perception.motion import get_motion_extractor
from moda_train.perception.s3fd import S3FDDetector, load_s3fd

FPS_TOLERANCE = 0.01
MIN_DIVERSITY_SEEDS = 3


@dataclass
class VideoRecord:
    """One clip's results: `values` (JSON-able, per metric) and `arrays` (features for FID/FVD, motion)."""

    key: str
    values: dict = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)


def generated_path(cfg: EvalConfig, key: str) -> Path:
    """Where the generated video of clip `key` is expected."""
    return Path(cfg.generated_dir) / cfg.generated_pattern.format(key=key)


def seed_paths(cfg: EvalConfig, key: str) -> list[Path]:
    """The multi-seed samples of clip `key` that exist (for sample diversity)."""
    paths = [
        Path(cfg.generated_dir) / cfg.diversity.seed_pattern.format(key=key, seed=s) for s in cfg.diversity.seeds
    ]
    return [p for p in paths if p.is_file()]


def alse_audio_backend(cfg: EvalConfig, scorer) -> str:
    """The audio feature backend for the ALSE expert: the config's, else the one its checkpoint was trained on
    (its config's `data.audio_backend`, else its shards' recorded one)."""
    module = scorer.module
    backend = cfg.motion_sync.audio_backend or module.cfg.data.audio_backend
    backend = backend or module.shard_backends.get("audio_backend", "")
    if not backend:
        raise ValueError("the ALSE checkpoint does not record its audio backend: set motion_sync.audio_backend")
    return backend


def emotion_values(classifier: EmotionLightningModule, motion: np.ndarray, target: int | None) -> dict:
    """One video's emotion record: the emotion it was generated for (`target`, None = none), the class the
    classifier assigns to its motion [T, 70] (raw units) and the class probabilities."""
    probabilities = classifier.probabilities(motion)[0].tolist()
    predicted = int(np.argmax(probabilities))
    return {
        "target": target,
        "predicted": predicted,
        "predicted_name": EMOTIONS[predicted],
        "probabilities": probabilities,
    }


class VideoEvaluator:
    """Computes the enabled metrics' per-video parts; see the module docstring."""

    def __init__(self, cfg: EvalConfig, enabled: set[str]) -> None:
        self.cfg, self.enabled = cfg, enabled
        self._nets: dict[str, object] = {}

    def _net(self, name: str):
        # Lazy: a worker that never needs a network never pays for loading it.
        if name not in self._nets:
            self._nets[name] = NETWORKS[name](self)
        return self._nets[name]

    def _read(self, path: Path) -> np.ndarray:
        video = read_video(path, self.cfg.max_frames)
        if abs(video.fps - self.cfg.fps) > FPS_TOLERANCE:
            raise ValueError(
                f"{path}: {video.fps:g} fps, but the protocol needs {self.cfg.fps:g} fps (config `fps`)"
            )
        return video.frames

    def _motion(self, frames: np.ndarray) -> np.ndarray:
        size = self.cfg.motion.crop_size
        crops = np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in frames])
        return np.asarray(self._net("motion").extract(crops).motion, np.float32)

    def evaluate(self, clip: Clip) -> VideoRecord:
        """All enabled per-video measurements of one clip (raises ValueError on unreadable or mismatched input)."""
        cfg, on = self.cfg, self.enabled
        gen_path = generated_path(cfg, clip.key)
        real, fake = self._read(clip.video), self._read(gen_path)
        length = min(len(real), len(fake))
        real, fake = real[:length], fake[:length]
        record = VideoRecord(clip.key, {"frames": length})

        if "fid" in on:
            ids = evenly_spaced(length, cfg.fid.frames_per_video)
            record.arrays["fid_real"] = self._net("inception")(real[ids])
            record.arrays["fid_fake"] = self._net("inception")(fake[ids])
            record.values["fid"] = {"frames": len(ids)}
        if "fvd" in on:
            starts = fvd_clips(clip.key, length, cfg.fvd.clip_frames, cfg.fvd.seed)
            if starts is not None:
                n, (real_start, fake_start) = cfg.fvd.clip_frames, starts
                record.arrays["fvd_real"] = self._net("i3d")(real[None, real_start : real_start + n])
                record.arrays["fvd_fake"] = self._net("i3d")(fake[None, fake_start : fake_start + n])
            record.values["fvd"] = {"clips": int(starts is not None), "real_start": starts[0] if starts else None}
        if "fsim" in on:
            record.values["fsim"] = self._fsim(clip, real, fake)
        generated_for = clip.emotion
        if generated_for is None and cfg.emotion.generated_for:
            generated_for = emotion_index(cfg.emotion.generated_for)
        record.values.update(
            self._self_contained(gen_path, self._audio_path(clip, gen_path), fake, clip, generated_for)
        )
        if cfg.ground_truth:
            # The ground truth shows the split's emotion only; emotion.generated_for says nothing about it.
            gt = self._self_contained(clip.video, ("split", clip.audio or clip.video), real, None, clip.emotion)
            record.values["gt"] = gt
        return record

    def _self_contained(
        self, path: Path, audio: tuple[str, Path], frames: np.ndarray, clip: Clip | None, emotion: int | None
    ) -> dict:
        """The metrics one video gives without its ground truth: sync, motion sync, pose spread, smoothness, the
        classified emotion against `emotion`, the one it shows or was generated for (sample diversity too when
        `clip` is given: its other seeds are generated videos)."""
        on, values = self.enabled, {}
        if "sync" in on:
            values["sync"] = self._sync(path, audio, len(frames))
        if on & {"diversity", "smoothness", "motion_sync", "emotion"}:
            motion = self._motion(frames)
            if "motion_sync" in on:
                values["motion_sync"] = self._motion_sync(audio, motion)
            if "diversity" in on:
                values["diversity"] = {"pose_spread": temporal_pose_spread(motion)}
                if clip is not None:
                    values["diversity"].update(self._sample_diversity(clip, motion))
            if "emotion" in on:
                values["emotion"] = emotion_values(self._net("emotion"), motion, emotion)
            if "smoothness" in on:
                jerk = motion_jerk(motion)
                values["smoothness"] = {
                    "motion_jerk_expression": jerk["expression"],
                    "motion_jerk_pose": jerk["pose"],
                    "frame_acceleration": frame_acceleration(frames),
                }
        return values

    def _audio_path(self, clip: Clip, gen_path: Path) -> tuple[str, Path]:
        # The generated file's own track is what a viewer hears; the split's audio is the fallback.
        if self.cfg.sync.audio == "generated" and has_audio(gen_path):
            return "generated", gen_path
        return "split", Path(clip.audio or clip.video)

    def _sync(self, path: Path, audio: tuple[str, Path], length: int) -> dict:
        s = self.cfg.sync
        try:
            detect = self._net("face_boxes") if s.protocol == "syncnet_python" else None
            result, info = score_video(
                self._net("syncnet"), path, audio[1], s.protocol, length, detect, s.min_track, s.min_face_size
            )
        except ValueError as err:  # no face track, too short: no Sync-C/D for this clip, its other metrics count
            return {"error": str(err), "audio": audio[0]}
        return {
            "offset": result.offset,
            "sync_c": result.sync_c,
            "sync_d": result.sync_d,
            "windows": result.windows,
            "audio": audio[0],
            "mdist": result.mdist,
            **info,
        }

    def _motion_sync(self, audio_source: tuple[str, Path], motion: np.ndarray) -> dict:
        source, audio = audio_source[0], load_audio(audio_source[1])
        features = self._net("audio_features").extract(audio, len(motion))
        result = self._net("alse").score_sync(motion, features)
        return {
            "offset": result["offset"],
            "sync_c": result["confidence"],
            "sync_d": result["min_dist"],
            "windows": result["windows"],
            "audio": source,
        }

    def _fsim(self, clip: Clip, real: np.ndarray, fake: np.ndarray) -> dict:
        from evaluation.fsim import fsim

        if clip.reference is not None:
            image = cv2.imread(str(clip.reference), cv2.IMREAD_COLOR)
            if image is None:
                raise ValueError(f"{clip.reference}: cannot read the reference image")
            reference = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        elif clip.reference_frame < len(real):
            reference = real[clip.reference_frame]
        else:
            raise ValueError(f"{clip.key}: reference_frame {clip.reference_frame} >= {len(real)} compared frames")
        ids = evenly_spaced(len(fake), self.cfg.fsim.frames_per_video)
        value, fallbacks = fsim(self._net("face"), reference, fake[ids])
        return {"value": value, "frames": len(ids), "fallback_frames": fallbacks}

    def _sample_diversity(self, clip: Clip, motion: np.ndarray) -> dict:
        paths = seed_paths(self.cfg, clip.key)
        if len(paths) < MIN_DIVERSITY_SEEDS:
            return {"samples": len(paths)}
        samples = [self._motion(self._read(p)) for p in paths]
        values = sample_diversity(samples)
        return {"samples": len(paths), "sample_expression": values["expression"], "sample_pose": values["pose"]}


def _face_boxes(evaluator: VideoEvaluator) -> FaceBoxes:
    """The syncnet_python protocol's face detector (`sync.detector`, `auto` resolved as in `check_metrics`)."""
    s = evaluator.cfg.sync
    if chosen_detector(s.detector, s.s3fd_weights) == "s3fd":
        net = load_s3fd(resolve_weights("s3fd", s.s3fd_weights))
        return S3FDDetector(net, s.s3fd_scale, s.s3fd_confidence, evaluator.cfg.device).boxes
    face = FaceConfig(min_confidence=s.detector_confidence)
    return lambda frames: detect_faces(frames, face)


def _audio_features(evaluator: VideoEvaluator):
    return get_audio_extractor(alse_audio_backend(evaluator.cfg, evaluator._net("alse")))


# network name -> builder from the evaluator (its config, and other networks it depends on)
NETWORKS: dict[str, Callable[[VideoEvaluator], object]] = {
    "inception": lambda ev: InceptionFeatures(ev.cfg.device, ev.cfg.fid.batch_size, ev.cfg.fid.protocol),
    "i3d": lambda ev: I3DFeatures(
        load_i3d(resolve_weights("i3d", ev.cfg.fvd.weights), ev.cfg.device),
        ev.cfg.fvd.resolution,
        ev.cfg.fvd.batch_size,
        ev.cfg.device,
    ),
    "syncnet": lambda ev: SyncScorer(
        load_syncnet(resolve_weights("syncnet", ev.cfg.sync.weights), ev.cfg.device),
        ev.cfg.sync.vshift,
        ev.cfg.sync.batch_size,
        ev.cfg.device,
    ),
    "face_boxes": _face_boxes,
    "alse": lambda ev: ALSEScorer.from_checkpoint(
        resolve_weights("alse", ev.cfg.motion_sync.checkpoint), ev.cfg.device
    ),
    "audio_features": _audio_features,
    "emotion": lambda ev: load_classifier(resolve_weights("emotion", ev.cfg.emotion.checkpoint), ev.cfg.device),
    "face": lambda ev: FaceEmbedder(),
    "motion": lambda ev: get_motion_extractor(ev.cfg.motion.extractor),
}
