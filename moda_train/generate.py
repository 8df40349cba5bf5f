"""Talking-head videos from a photo and speech with a trained MMDiT checkpoint.

    python -m moda_train.generate --checkpoint runs/mmdit_tiny_cpu/checkpoints/last.ckpt \\
        --image photo.jpg --audio speech.wav --seeds 0 1 2 --out outputs/generated

writes `<out>/<name>_seed<k>.mp4` (25 fps, the input audio muxed in) and `<name>_seed<k>.npy` (the generated
motion, float32 [T, 70] real units) per seed. The pipeline reuses data_prep's pieces: mediapipe face detection
and the square crop of `data_prep.face_crop`, the motion extractor the training shards were made with (identity
keypoints and the photo's own motion), the audio backend the checkpoint was trained on (checked), any audio file
ffmpeg reads through `data_prep.audio.load_audio`, and `data_prep.video_io.write_video`. Motion comes from
`moda_train.inference.MotionGenerator` (windows with cross-fade), frames from a `moda_train.render.Renderer`.

From Python: `generate_video(...)` for one photo + audio, `generate_split(...)` for every clip of a benchmark
split (what `python -m evaluation.run` calls with a checkpoint), both built on `GenerationPipeline`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from tqdm import tqdm

from data_prep.audio import SAMPLE_RATE, get_audio_extractor, load_audio
from data_prep.config import FaceConfig
from data_prep.face_crop import FaceDetector, crop_square
from data_prep.motion import MotionExtractor, get_motion_extractor
from data_prep.video_io import write_video
from moda_train.inference import MotionGenerator, check_audio_backend_name
from moda_train.lit.module import MoDALightningModule
from moda_train.motion_layout import NULL_EMOTION, emotion_index
from moda_train.render import ReferenceFace, Renderer, WarpRenderer

FPS = 25


def load_checkpoint(path: str | os.PathLike, device: str = "cpu") -> MoDALightningModule:
    """The MMDiT LightningModule of a checkpoint file, in eval mode; a clear error when the file is missing."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    return MoDALightningModule.load_from_checkpoint(path, map_location=device).eval()


def recorded_motion_backend(module: MoDALightningModule) -> str:
    """The motion backend of the training shards (their stats.json, if still where the config says), or ""."""
    stats_path = Path(module.cfg.data.stats_path)
    if not stats_path.is_file():
        return ""
    backend = json.loads(stats_path.read_text()).get("motion_backend", "")
    return backend.get("name", "") if isinstance(backend, dict) else str(backend)


def load_image(path: str | os.PathLike) -> np.ndarray:
    """A photo file (jpg, png, webp, bmp, tiff, ...) as uint8 RGB [H, W, 3]; a clear error if it cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    # imdecode rather than imread: it reads any path Python can open, and grey or RGBA photos come back as BGR.
    image = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"cannot read image {path}: not an image format OpenCV decodes")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_video_frame(path: str | os.PathLike, index: int) -> np.ndarray:
    """Frame `index` (at 25 fps) of a video as uint8 RGB [H, W, 3], read with data_prep's decoder."""
    from data_prep.decode import FrameReader

    frames = next(FrameReader(str(path)).read(np.array([index / FPS]), chunk=1), None)
    if frames is None or len(frames) == 0:
        raise ValueError(f"cannot read frame {index} of {path}")
    return frames[0]


def reference_face(
    image: np.ndarray,
    extractor: MotionExtractor,
    face: FaceConfig | None = None,
    detector: FaceDetector | None = None,
) -> ReferenceFace:
    """Detect the (largest) face in uint8 RGB `image`, crop it as data_prep does (`face` settings: 256 px, scale
    1.8 by default) and extract its motion and identity keypoints with `extractor`."""
    image = np.ascontiguousarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"the reference image must be uint8 RGB [H, W, 3], got {image.dtype} {image.shape}")
    face = face or FaceConfig()
    faces = (detector or FaceDetector(face)).detect(image)
    if len(faces) == 0:
        raise ValueError("no face found in the reference image")
    x0, y0, w, h = faces[0]
    box = np.array([x0 + w / 2, y0 + h / 2, max(w, h) * face.crop_scale])
    crop = crop_square(image, box, face.crop_size)
    sequence = extractor.extract(crop[None])
    if not sequence.valid[0]:
        raise ValueError(f"the {extractor.name} motion extractor found no face in the reference crop")
    return ReferenceFace(image, box, face.crop_size, sequence.motion[0], sequence.identity, extractor.name)


class GenerationPipeline:
    """Checkpoint + extractors + renderer, loaded once; `run` makes the videos of one photo and one audio.

    `audio_backend` / `motion_backend` default to what the checkpoint and its training shards recorded;
    asking for another audio backend than the checkpoint's is an error (`inference.AudioBackendMismatch`).
    `face` sets the reference crop (use the shard config's face settings; 256 px, scale 1.8 by default).
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
        renderer: Renderer | None = None,
        face: FaceConfig | None = None,
        device: str = "cpu",
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
        self.generator = MotionGenerator(self.module, self.audio, steps, guidance_audio, guidance_emotion)
        self.motion = get_motion_extractor(motion_backend, **(motion_options or {}))
        self.renderer = renderer or WarpRenderer()
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
    image: str | os.PathLike,
    audio: str | os.PathLike,
    out_dir: str | os.PathLike = "outputs/generated",
    emotion: str | int | None = None,
    guidance_audio: float | None = None,
    guidance_emotion: float | None = None,
    seeds: Sequence[int] = (0,),
    name: str | None = None,
    progress: bool = True,
    **pipeline_options: Any,
) -> list[Path]:
    """Videos of the photo at `image` speaking the audio file `audio` (any format/rate ffmpeg reads), one per
    seed: `<out_dir>/<name>_seed<k>.mp4` + `.npy`. `name` defaults to `<photo stem>_<audio stem>`; emotion is a
    name (e.g. "happiness") or class id, None for none; guidance scales default to the checkpoint's config.
    Extra keyword options go to `GenerationPipeline` (audio/motion backend and options, steps, renderer, ...)."""
    photo = load_image(image)
    wave = load_audio(audio, SAMPLE_RATE)
    emotion_id = NULL_EMOTION if emotion is None else emotion_index(emotion)
    pipeline = GenerationPipeline(
        checkpoint, guidance_audio=guidance_audio, guidance_emotion=guidance_emotion, **pipeline_options
    )
    name = name or f"{Path(image).stem}_{Path(audio).stem}"
    return pipeline.run(photo, wave, out_dir, name, seeds, emotion_id, progress)


def split_outputs(out_dir: Path, key: str, seeds: Sequence[int]) -> list[Path]:
    """Every file a clip of `generate_split` leaves: per seed the motion and the video, then `<key>.mp4`."""
    per_seed = [out_dir / f"{key}_seed{seed}{suffix}" for seed in seeds for suffix in (".npy", ".mp4")]
    return [*per_seed, out_dir / f"{key}.mp4"]


def generate_split(
    checkpoint: str,
    rows: list[dict],
    out_dir: str | os.PathLike,
    seeds: Sequence[int] = (0,),
    emotion: str | int | None = None,
    progress: bool = True,
    **pipeline_options: Any,
) -> dict[str, Path]:
    """Generate every clip of a benchmark split from its reference frame and audio; returns {key: video path}.

    Each row has `key`, `video` (ground truth), optionally `audio` (driving audio; empty = the video's audio
    track), `reference_frame` (index into the video at 25 fps, default 0) and `reference` (a photo file, wins
    over reference_frame). Per clip and seed it writes `<out_dir>/<key>_seed<s>.mp4` and `.npy`, and
    `<out_dir>/<key>.mp4` is the first seed's video (a hard link, or a copy where links are not possible), so
    the split can be scored with `generated_pattern: "{key}.mp4"` and the seeds used for sample diversity.
    Clips whose files all exist are skipped, so a rerun (e.g. for another metric) regenerates nothing; the
    checkpoint is loaded only when some clip needs generating.
    """
    if not seeds:
        raise ValueError("seeds is empty: give at least one seed")
    out_dir = Path(out_dir)
    emotion_id = NULL_EMOTION if emotion is None else emotion_index(emotion)
    results: dict[str, Path] = {}
    todo = []
    for number, row in enumerate(rows, 1):
        key, video = str(row.get("key") or ""), row.get("video")
        if not key or not video:
            raise ValueError(f"row {number}: every row needs a `key` and a `video`, got {row}")
        results[key] = out_dir / f"{key}.mp4"
        if not all(path.is_file() for path in split_outputs(out_dir, key, seeds)):
            todo.append(row)
    if not todo:
        return results
    pipeline = GenerationPipeline(checkpoint, **pipeline_options)
    for row in tqdm(todo, desc="generate split", unit="clip", disable=not progress):
        key = str(row["key"])
        if row.get("reference"):
            image = load_image(row["reference"])
        else:
            image = read_video_frame(row["video"], int(row.get("reference_frame") or 0))
        wave = load_audio(row.get("audio") or row["video"], SAMPLE_RATE)
        first = pipeline.run(image, wave, out_dir, key, seeds, emotion_id, progress=False)[0]
        _link_or_copy(first, results[key])
    return results


def _link_or_copy(source: Path, target: Path) -> None:
    """Put `source` at `target` (replacing it) as a hard link, or a copy on filesystems without links."""
    partial = target.with_name(target.name + ".partial")
    partial.unlink(missing_ok=True)
    try:
        os.link(source, partial)
    except OSError:
        shutil.copyfile(source, partial)
    os.replace(partial, target)


def _key_values(pairs: Sequence[str], flag: str) -> dict[str, Any]:
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"{flag} {pair!r}: expected key=value")
        options[key] = value
    return options


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m moda_train.generate",
        description="Generate talking-head videos from a photo and speech with a trained MMDiT checkpoint.",
    )
    parser.add_argument("--checkpoint", required=True, help="MMDiT checkpoint (.ckpt) from moda_train.train")
    parser.add_argument("--image", required=True, help="reference photo with one face (jpg, png, ...)")
    parser.add_argument("--audio", required=True, help="speech: any file ffmpeg reads (wav, mp3, m4a, mp4, ...)")
    parser.add_argument("--emotion", default=None, help="emotion name (e.g. happiness) or class id 0..8")
    parser.add_argument("--guidance-audio", type=float, default=None, help="audio guidance (default: config)")
    parser.add_argument("--guidance-emotion", type=float, default=None, help="emotion guidance (default: config)")
    parser.add_argument("--steps", type=int, default=None, help="Euler steps (default: the config's, 10)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="one video per seed (default: 0)")
    parser.add_argument("--out", default="outputs/generated", help="output folder (default: outputs/generated)")
    parser.add_argument("--name", default=None, help="file name stem (default: <photo stem>_<audio stem>)")
    parser.add_argument("--audio-backend", default="", help="audio features (default: the checkpoint's)")
    parser.add_argument(
        "--audio-option", action="append", default=[], metavar="KEY=VALUE", help="audio extractor option"
    )
    parser.add_argument("--motion-backend", default="", help="motion extractor (default: the training shards')")
    parser.add_argument(
        "--motion-option", action="append", default=[], metavar="KEY=VALUE", help="motion extractor option"
    )
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: 0 on success, 1 with a one-line error for bad input."""
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        paths = generate_video(
            args.checkpoint,
            args.image,
            args.audio,
            args.out,
            emotion=args.emotion,
            guidance_audio=args.guidance_audio,
            guidance_emotion=args.guidance_emotion,
            seeds=args.seeds,
            name=args.name,
            progress=not args.no_progress,
            steps=args.steps,
            audio_backend=args.audio_backend,
            audio_options=_key_values(args.audio_option, "--audio-option"),
            motion_backend=args.motion_backend,
            motion_options=_key_values(args.motion_option, "--motion-option"),
        )
    except (FileNotFoundError, ValueError, ImportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    for path in paths:
        print(f"{path}  (motion: {path.with_suffix('.npy')})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
