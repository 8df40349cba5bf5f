"""Photo + speech -> talking-head videos with a trained MMDiT checkpoint: `GenerationPipeline`, `generate_video`.

The pipeline reuses the perception layer: mediapipe face detection and the square crop of
`moda_train.perception.face_crop`, the motion extractor the training shards were made with (identity keypoints
and the photo's own motion), the audio backend the checkpoint was trained on (checked), any audio file ffmpeg
reads (`moda_train.perception.audio.load_audio`) and `moda_train.perception.video_io.write_video`. Motion comes
from `moda_train.generation.motion_generator.MotionGenerator` (windows with cross-fade), frames from a
`moda_train.generation.render.Renderer`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from moda_train.core.checkpoint import load_module
from moda_train.core.motion_layout import MOTION_DIM, NULL_EMOTION, NUM_KEYPOINTS, emotion_index
from moda_train.core.rates import FPS, SAMPLE_RATE
from moda_train.core.stats import backend_convention, backend_name, read_stats_file
from moda_train.generation.inputs import load_image, load_speech
from moda_train.generation.liveportrait_render import LivePortraitRenderer
from moda_train.generation.motion_generator import MotionGenerator, check_audio_backend_name
from moda_train.generation.render import ReferenceFace, Renderer, WarpRenderer
from moda_train.lit.mmdit_module import MoDALightningModule
from moda_train.perception.audio import get_audio_extractor
from moda_train.perception.config import FaceConfig
from moda_train.perception.face_align import LivePortraitCropper
from moda_train.perception.face_crop import FaceDetector, face_box
from moda_train.perception.motion import MotionExtractor, get_motion_extractor
from moda_train.perception.registry import build_backend
from moda_train.perception.video_io import write_video

PORTRAIT_MODEL = 0  # mediapipe face detection's short-range model

RENDERERS: dict[str, type[Renderer]] = {"warp": WarpRenderer, "liveportrait": LivePortraitRenderer}
# The renderer each motion backend's motion is made for: keypoints that are landmarks, or LivePortrait's own.
DEFAULT_RENDERERS = {"landmarks": "warp", "liveportrait": "liveportrait"}


def get_renderer(name: str, **options: Any) -> Renderer:
    """Build a renderer by name (`warp`, `liveportrait`); options go to its constructor."""
    return build_backend("renderer", RENDERERS, name, options)


def load_checkpoint(path: str | os.PathLike, device: str = "cpu") -> MoDALightningModule:
    """The MMDiT LightningModule of a checkpoint file, in eval mode (errors: `core.checkpoint.read_checkpoint`)."""
    return load_module(MoDALightningModule, path, "mmdit", device)


def recorded_motion_backend(module: MoDALightningModule) -> str:
    """The motion backend of the training shards: `data.motion_backend` from the checkpoint's config, else their
    stats.json's (if still where the config says), or ""."""
    stats_path = Path(module.cfg.data.stats_path)
    if module.cfg.data.motion_backend or not stats_path.is_file():
        return module.cfg.data.motion_backend
    return backend_name(read_stats_file(stats_path).get("motion_backend"))


def reference_face(
    image: np.ndarray,
    extractor: MotionExtractor,
    face: FaceConfig | None = None,
    detector: FaceDetector | None = None,
) -> ReferenceFace:
    """Detect the (largest) face in uint8 RGB `image`, crop it as data_prep does for `extractor` (its `crop`
    convention: the `face` box, 256 px and scale 1.8 by default, or LivePortrait's rotation-aligned crop from the
    face's FaceMesh landmarks) and extract its motion and identity keypoints with `extractor`.

    When the configured detector finds no face, mediapipe's short-range model (faces within about 2 m, i.e. a
    portrait) is tried before giving up: the full-range model data_prep uses misses some close-up faces, e.g.
    the first frame of one of the demo corpus's test videos."""
    image = np.ascontiguousarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"the reference image must be uint8 RGB [H, W, 3], got {image.dtype} {image.shape}")
    face = face or FaceConfig()
    faces = (detector or FaceDetector(face)).detect(image)
    if len(faces) == 0 and face.model_selection != PORTRAIT_MODEL:
        faces = FaceDetector(dataclasses.replace(face, model_selection=PORTRAIT_MODEL)).detect(image)
    if len(faces) == 0:
        raise ValueError("no face found in the reference image")
    box = face_box(faces, face)
    square = None
    if extractor.crop == "liveportrait":  # LivePortrait's rotation-aligned crop from the face's landmarks
        cropper = LivePortraitCropper()
        try:
            square = cropper.square(image, box)
        finally:
            cropper.close()
        if square is None:
            raise ValueError("FaceMesh found no face landmarks in the reference image (for the LivePortrait crop)")
    # The crop first (motion and identity are filled in from it below): one place knows how to cut it.
    blank = (np.zeros(MOTION_DIM), np.zeros(3 * NUM_KEYPOINTS))
    reference = ReferenceFace(image, box, face.crop_size, *blank, extractor.name, square, extractor.expression)
    sequence = extractor.extract(reference.crop(face.crop_size)[None])
    if not sequence.valid[0]:
        raise ValueError(f"the {extractor.name} motion extractor found no face in the reference crop")
    return dataclasses.replace(reference, motion=sequence.motion[0], identity=sequence.identity)


def recorded_motion_convention(module: MoDALightningModule) -> str:
    """The crop and expression convention of the training motion: `data.motion_convention` from the checkpoint's
    config, else their stats.json's (if still where the config says), or "" (unrecorded: not checked)."""
    stats_path = Path(module.cfg.data.stats_path)
    if module.cfg.data.motion_convention or not stats_path.is_file():
        return module.cfg.data.motion_convention
    return backend_convention(read_stats_file(stats_path).get("motion_backend"))


def check_motion_convention(module: MoDALightningModule, extractor: MotionExtractor) -> None:
    """Raise ValueError when `extractor` makes motion of another convention than the checkpoint was trained on."""
    recorded = recorded_motion_convention(module)
    if recorded and recorded != extractor.convention:
        raise ValueError(
            f"the checkpoint was trained on motion of the {recorded!r} convention but the {extractor.name} motion "
            f"backend as configured gives {extractor.convention!r}: configure it as the training data was (the "
            "liveportrait backend's `crop` and `native_expression` options)"
        )


class GenerationPipeline:
    """Checkpoint + extractors + renderer, loaded once; `run` makes the videos of one photo and one audio.

    `audio_backend` / `motion_backend` default to what the checkpoint and its training shards recorded;
    asking for another audio backend than the checkpoint's is an error (`inference.AudioBackendMismatch`).
    `face` sets the reference crop (use the shard config's face settings; 256 px, scale 1.8 by default).
    `renderer` is a Renderer or a name of `RENDERERS` (built with `renderer_options`); by default the one the
    motion backend's motion is made for (`DEFAULT_RENDERERS`). `rescale_reference` defaults to the checkpoint's
    `flow.rescale_reference` (`MotionGenerator`).
    """

    def __init__(
        self,
        checkpoint: str | os.PathLike,
        audio_backend: str = "",
        audio_options: dict[str, Any] | None = None,
        motion_backend: str = "",
        motion_options: dict[str, Any] | None = None,
        steps: int | None = None,
        guidance_audio: float | None = None,
        guidance_emotion: float | None = None,
        renderer: Renderer | str | None = None,
        face: FaceConfig | None = None,
        device: str = "cpu",
        renderer_options: dict[str, Any] | None = None,
        rescale_reference: bool | None = None,
    ) -> None:
        self.module = load_checkpoint(checkpoint, device)
        audio_backend = check_audio_backend_name(self.module, audio_backend)
        recorded_motion = recorded_motion_backend(self.module)
        motion_backend = motion_backend or recorded_motion or "landmarks"
        if recorded_motion and recorded_motion != motion_backend:
            raise ValueError(
                f"the checkpoint's training shards were made with the {recorded_motion!r} motion backend, not "
                f"{motion_backend!r}: the reference photo's motion must come from the same extractor"
            )
        self.audio = get_audio_extractor(audio_backend, **(audio_options or {}))
        self.generator = MotionGenerator(
            self.module, self.audio, steps, guidance_audio, guidance_emotion, rescale_reference=rescale_reference
        )
        self.motion = get_motion_extractor(motion_backend, **(motion_options or {}))
        check_motion_convention(self.module, self.motion)
        if not isinstance(renderer, Renderer):
            name = renderer or DEFAULT_RENDERERS.get(motion_backend, "warp")
            renderer = get_renderer(name, **(renderer_options or {}))
        self.renderer = renderer
        self.face = face or FaceConfig()
        self._detector: FaceDetector | None = None

    def reference(self, image: np.ndarray) -> ReferenceFace:
        """The reference face of `image` with this pipeline's detector, crop settings and motion extractor."""
        if self._detector is None:
            self._detector = FaceDetector(self.face)
        return reference_face(image, self.motion, self.face, self._detector)

    def run(
        self,
        image: np.ndarray,
        wave: np.ndarray,
        out_dir: str | os.PathLike,
        name: str,
        seeds: Sequence[int] = (0,),
        emotion: int = NULL_EMOTION,
        progress: bool = True,
    ) -> list[Path]:
        """Generate one video per seed; returns `<out_dir>/<name>_seed<k>.mp4` in seed order.

        The motion file `<name>_seed<k>.npy` is written before its video, and the video appears only when
        complete, so an existing mp4 means that seed is done.
        """
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        reference = self.reference(image)
        motions = self.generator.generate(
            wave, reference.identity, reference.motion, emotion, seeds, progress=progress
        )
        paths = []
        for seed, motion in zip(seeds, motions, strict=True):
            path = out_dir / f"{name}_seed{seed}.mp4"
            np.save(out_dir / f"{name}_seed{seed}.npy", motion)
            frames = tqdm(
                self.renderer.render(reference, motion),
                total=len(motion),
                desc=f"render seed {seed}",
                unit="frame",
                disable=not progress,
            )
            paths.append(write_video(path, frames, fps=FPS, audio=wave, sample_rate=SAMPLE_RATE))
        return paths


def generate_video(
    checkpoint: str | os.PathLike,
    image: str | os.PathLike | np.ndarray,
    audio: str | os.PathLike | np.ndarray,
    out_dir: str | os.PathLike = "outputs/generated",
    emotion: str | int | None = None,
    guidance_audio: float | None = None,
    guidance_emotion: float | None = None,
    seeds: Sequence[int] = (0,),
    name: str | None = None,
    progress: bool = True,
    **pipeline_options: Any,
) -> list[Path]:
    """Videos of the photo `image` speaking `audio`, one per seed: `<out_dir>/<name>_seed<k>.mp4` + `.npy`.

    `image` is a photo file or uint8 RGB [H, W, 3]; `audio` any file ffmpeg reads or a float32 16 kHz mono wave
    (both as `moda_train.generation.inputs` reads them). Files are read, and fail, before the checkpoint loads.
    `name` defaults to `<photo stem>_<audio stem>` (required for arrays); emotion is a name (e.g. "happiness")
    or class id, None for none; guidance scales default to the checkpoint's config. Extra keyword options go to
    `GenerationPipeline` (audio/motion backend and options, steps, renderer, ...)."""
    photo = image if isinstance(image, np.ndarray) else load_image(image)
    wave = audio if isinstance(audio, np.ndarray) else load_speech(audio)
    emotion_id = NULL_EMOTION if emotion is None else emotion_index(emotion)
    if name is None:
        if isinstance(image, np.ndarray) or isinstance(audio, np.ndarray):
            raise ValueError("name is required when the image or the audio is given as an array")
        name = f"{Path(image).stem}_{Path(audio).stem}"
    pipeline = GenerationPipeline(
        checkpoint, guidance_audio=guidance_audio, guidance_emotion=guidance_emotion, **pipeline_options
    )
    return pipeline.run(photo, wave, out_dir, name, seeds, emotion_id, progress)
