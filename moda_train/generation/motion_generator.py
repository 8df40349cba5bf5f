"""Long-audio motion generation: speech of any length -> motion [T, 70] in real units, window by window.

MoDA generates fixed windows of `cfg.data.window_frames` frames (80 = 3.2 s). Longer audio is covered by
consecutive windows that start `window - overlap` frames apart (64 with the default 16-frame overlap):

    window 0: frames [0, 80)     conditioned on the reference photo's motion
    window 1: frames [64, 144)   conditioned on the generated motion of the frames just before frame 64
    ...                          the last window may run past the audio; its extra frames are dropped

Over each 16-frame overlap the output fades linearly from the earlier window to the later one, and at the end a
3-frame moving average smooths the 7 pose dimensions (head jitter between windows shows most in pose). The
previous-motion condition is the `prev_frames` frames right before the window start, as in training (they lie
before the overlap, so their motion is already final when the window is sampled). Audio shorter than one window
is zero-padded (silence) to a full window and the output trimmed back.

Memory is flat in the audio length: windows are sampled one after the other, and each window's audio features are
extracted from its own stretch of the wave plus `audio_context_frames` of context on each side (with the `logmel`
backend the features then equal those of the whole file exactly; a HuBERT encoder sees 1 s of context each side).
Several seeds are generated in one batch; seed k's motion does not depend on which other seeds are in the batch.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import uniform_filter1d
from tqdm import tqdm

from moda_train.core.motion_layout import MOTION_DIM, NULL_EMOTION, POSE, SCALE, TRANSLATION
from moda_train.core.rates import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME
from moda_train.core.stats import backend_name, read_stats_file
from moda_train.lit.mmdit_module import MoDALightningModule
from moda_train.perception.audio import AudioExtractor

DEFAULT_OVERLAP = 16  # MoDA's: windows of 80 frames start 64 frames apart
POSE_SMOOTHING_FRAMES = 3
AUDIO_CONTEXT_FRAMES = 25  # 1 s of audio on each side of a window when its features are extracted
REFERENCE_EPSILON = 1e-5  # the released pipeline's, in its reference-scale ratio


class AudioBackendMismatch(ValueError):
    """The audio features asked for are not the ones the checkpoint was trained on."""


def window_starts(num_frames: int, window: int, overlap: int) -> list[int]:
    """First frame of every window covering `num_frames` frames: 0, stride, 2 stride, ... (stride = window -
    overlap), up to the first window that reaches the last frame. One window when num_frames <= window."""
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if not 0 <= overlap < window:
        raise ValueError(f"overlap must lie in [0, window={window}), got {overlap}")
    stride = window - overlap
    count = 1 + max(0, math.ceil((num_frames - window) / stride))
    return [k * stride for k in range(count)]


def crossfade_weights(overlap: int) -> np.ndarray:
    """Weight of the later window at each overlap frame: 1/(O+1), ..., O/(O+1) (neither window is cut off)."""
    return np.arange(1, overlap + 1, dtype=np.float32) / (overlap + 1)


def smooth_pose(motion: np.ndarray, frames: int = POSE_SMOOTHING_FRAMES) -> np.ndarray:
    """A copy of `motion` [..., T, 70] with a centred `frames`-frame moving average on the pose dimensions."""
    out = np.array(motion, dtype=np.float32, copy=True)
    if frames > 1 and out.shape[-2] > 1:
        out[..., POSE] = uniform_filter1d(out[..., POSE], size=frames, axis=-2, mode="nearest")
    return out


def reference_scale_ratio(reference_motion: np.ndarray, mean_scale: float) -> float:
    """The released pipeline's r = (reference scale + 1e-5) / (mean scale + 1e-5) (`flow.rescale_reference`)."""
    return (float(np.asarray(reference_motion).reshape(MOTION_DIM)[SCALE][0]) + REFERENCE_EPSILON) / (
        mean_scale + REFERENCE_EPSILON
    )


def scale_placement(motion: np.ndarray, factor: float) -> np.ndarray:
    """A float32 copy of `motion` [..., 70] with its scale and translation (tx, ty, tz) multiplied by `factor`."""
    out = np.array(motion, dtype=np.float32, copy=True)
    out[..., SCALE] *= factor
    out[..., TRANSLATION] *= factor
    return out


def frames_for_samples(num_samples: int) -> int:
    """Video frames (25 fps) that cover `num_samples` of 16 kHz audio: every sample lands in some frame."""
    if num_samples < 1:
        raise ValueError("the audio is empty: there is nothing to animate")
    return math.ceil(num_samples / SAMPLES_PER_FRAME)


def recorded_audio_backend(module: MoDALightningModule) -> str:
    """The audio backend a checkpoint was trained with: `data.audio_backend` from its stored config, else the
    backend named in the training shards' stats.json when that file is still where the config says; "" if
    neither records one."""
    recorded = module.cfg.data.audio_backend
    stats_path = Path(module.cfg.data.stats_path)
    if not recorded and stats_path.is_file():
        recorded = backend_name(read_stats_file(stats_path).get("audio_backend"))
    return recorded


def check_audio_backend_name(module: MoDALightningModule, asked: str) -> str:
    """The audio backend to generate with: `asked`, or the recorded one when `asked` is empty. Raises
    AudioBackendMismatch when both are given and differ, ValueError when neither names one."""
    recorded = recorded_audio_backend(module)
    if asked and recorded and asked != recorded:
        raise AudioBackendMismatch(
            f"the checkpoint was trained on {recorded!r} audio features (data.audio_backend) but the "
            f"{asked!r} audio backend was asked for: generate with the {recorded!r} backend"
        )
    if not (asked or recorded):
        raise ValueError(
            "the checkpoint records no audio backend (data.audio_backend is empty and its stats.json is not "
            "found): name the one it was trained with (e.g. --audio-backend logmel)"
        )
    return asked or recorded


def check_audio_backend(module: MoDALightningModule, extractor: AudioExtractor) -> None:
    """Raise AudioBackendMismatch when `extractor` is not the backend the checkpoint recorded, or its features
    do not have the width the network takes (model.audio_dim)."""
    check_audio_backend_name(module, extractor.name)
    width = int(np.prod(extractor.frame_shape))
    if width != module.cfg.model.audio_dim:
        raise AudioBackendMismatch(
            f"the {extractor.name!r} audio backend gives {list(extractor.frame_shape)} = {width} features per "
            f"frame but the checkpoint's network takes model.audio_dim={module.cfg.model.audio_dim}: use the "
            f"backend (and options, e.g. the same HuBERT checkpoint) the model was trained with"
        )


@dataclass
class WindowPlan:
    """Which frames each window covers for a clip of `num_frames` frames."""

    num_frames: int
    window: int
    overlap: int

    @property
    def starts(self) -> list[int]:
        return window_starts(self.num_frames, self.window, self.overlap)

    @property
    def padded_frames(self) -> int:
        """Frames actually generated: the last window's end (>= num_frames)."""
        return self.starts[-1] + self.window


class MotionGenerator:
    """Generates long motion sequences from a trained MMDiT checkpoint (see the module docstring).

    `steps`, `guidance_audio`, `guidance_emotion` and `rescale_reference` default to the checkpoint's `flow`
    config. The audio extractor is checked against the checkpoint (`check_audio_backend`) when the generator is
    built. With `rescale_reference`, the reference motion's scale and translation are divided by
    `reference_scale_ratio` (against the training mean scale) before conditioning, and the generated ones
    multiplied by it: the generated motion lives at the reference photo's scale either way.
    """

    def __init__(
        self,
        module: MoDALightningModule,
        audio_extractor: AudioExtractor,
        steps: int | None = None,
        guidance_audio: float | None = None,
        guidance_emotion: float | None = None,
        overlap: int = DEFAULT_OVERLAP,
        audio_context_frames: int = AUDIO_CONTEXT_FRAMES,
        rescale_reference: bool | None = None,
    ) -> None:
        cfg = module.cfg
        check_audio_backend(module, audio_extractor)
        self.module = module.eval()
        self.audio = audio_extractor
        self.window = cfg.data.window_frames
        self.prev_frames = cfg.data.prev_frames  # motion frames; a VAE-space model encodes them itself
        self.steps = cfg.flow.sample_steps if steps is None else steps
        self.guidance_audio = cfg.flow.guidance_audio if guidance_audio is None else guidance_audio
        self.guidance_emotion = cfg.flow.guidance_emotion if guidance_emotion is None else guidance_emotion
        self.context = audio_context_frames
        self.rescale_reference = cfg.flow.rescale_reference if rescale_reference is None else rescale_reference
        if not 0 <= overlap < self.window or self.prev_frames > self.window - overlap:
            raise ValueError(
                f"overlap={overlap} must lie in [0, {self.window}) and leave room for the "
                f"{self.prev_frames} previous-motion frame(s) before the overlap"
            )
        self.overlap = overlap

    def window_audio(self, wave: np.ndarray, start: int) -> np.ndarray:
        """Features [window, L*D] of frames [start, start + window) from their stretch of the wave plus context;
        samples before 0 or after the end of the wave count as silence."""
        first = (start - self.context) * SAMPLES_PER_FRAME
        length = (self.window + 2 * self.context) * SAMPLES_PER_FRAME
        chunk = np.zeros(length, dtype=np.float32)
        lo, hi = max(first, 0), min(first + length, len(wave))
        if hi > lo:
            chunk[lo - first : hi - first] = wave[lo:hi]
        features = self.audio.extract(chunk, self.window + 2 * self.context)
        inner = np.asarray(features[self.context : self.context + self.window], dtype=np.float32)
        return inner.reshape(self.window, -1)

    @torch.no_grad()
    def generate(
        self,
        wave: np.ndarray,
        identity: np.ndarray,
        reference_motion: np.ndarray,
        emotion: int = NULL_EMOTION,
        seeds: Sequence[int] = (0,),
        num_frames: int | None = None,
        progress: bool = False,
    ) -> np.ndarray:
        """Motion float32 [len(seeds), T, 70] in real units for a 16 kHz mono `wave`.

        identity [63] and reference_motion [70] come from the reference photo (same motion backend as the
        training data); emotion is a class id (8 = none); T = `num_frames`, by default the frames that cover
        the wave (`frames_for_samples`).
        """
        wave = np.asarray(wave, dtype=np.float32)
        if wave.ndim != 1:
            raise ValueError(f"wave must be mono float32 [N] at 16 kHz, got shape {wave.shape}")
        num_frames = frames_for_samples(len(wave)) if num_frames is None else num_frames
        if num_frames < self.window:
            warnings.warn(
                f"the audio is {len(wave) / SAMPLE_RATE:.2f} s ({num_frames} frames), shorter than one "
                f"{self.window}-frame window ({self.window / FPS:.1f} s): the video will be {num_frames} frames "
                "long, cut from one window padded with silence",
                stacklevel=2,
            )
        plan = WindowPlan(num_frames, self.window, self.overlap)
        ratio = 1.0
        if self.rescale_reference:
            ratio = reference_scale_ratio(reference_motion, float(self.module.motion_mean[SCALE][0]))
            reference_motion = scale_placement(reference_motion, 1.0 / ratio)
        out = np.zeros((len(seeds), plan.padded_frames, MOTION_DIM), dtype=np.float32)  # normalised units
        for start, window in tqdm(
            self._windows(wave, identity, reference_motion, emotion, seeds, plan, out),
            total=len(plan.starts),
            desc="motion windows",
            unit="window",
            disable=not progress,
        ):
            self._place(out, window, start)
        motion = self.module.denormalize(torch.from_numpy(out[:, :num_frames])).numpy()
        return scale_placement(smooth_pose(motion), ratio)

    def _windows(
        self,
        wave: np.ndarray,
        identity: np.ndarray,
        reference_motion: np.ndarray,
        emotion: int,
        seeds: Sequence[int],
        plan: WindowPlan,
        out: np.ndarray,
    ) -> Iterator[tuple[int, np.ndarray]]:
        """Sample window after window; each reads its previous motion from `out`, which the caller fills."""
        if not seeds:
            raise ValueError("seeds is empty: give at least one seed")
        if not 0 <= emotion <= NULL_EMOTION:
            raise ValueError(f"emotion must be a class id in 0..{NULL_EMOTION}, got {emotion}")
        module, batch = self.module, len(seeds)
        device, dtype = module.motion_mean.device, module.motion_mean.dtype
        reference = torch.as_tensor(np.asarray(reference_motion, dtype=np.float32).reshape(MOTION_DIM))
        reference = module.normalize(reference.to(device, dtype))
        generators = [torch.Generator().manual_seed(int(seed)) for seed in seeds]
        cond = {
            "identity": torch.as_tensor(np.asarray(identity, dtype=np.float32))
            .to(device, dtype)[None]
            .repeat(batch, 1),
            "emotion": torch.full((batch,), int(emotion), dtype=torch.long, device=device),
        }
        for start in plan.starts:
            if start == 0:  # the first window continues from the reference photo's own motion
                prev = reference.expand(batch, self.prev_frames, MOTION_DIM)
            else:
                prev = torch.from_numpy(out[:, start - self.prev_frames : start]).to(device, dtype)
            audio = torch.from_numpy(self.window_audio(wave, start)).to(device, dtype)
            shape = module.noise_shape(self.window)  # raw motion or VAE latent frames
            noise = torch.stack([torch.randn(shape, generator=g) for g in generators])
            motion = module.sample(
                {**cond, "audio": audio.expand(batch, -1, -1), "prev_motion": prev},
                self.window,
                noise=noise.to(device, dtype),
                steps=self.steps,
                guidance_audio=self.guidance_audio,
                guidance_emotion=self.guidance_emotion,
            )
            yield start, motion.float().cpu().numpy()

    def _place(self, out: np.ndarray, window: np.ndarray, start: int) -> None:
        """Write a window into `out`, cross-fading it with what the previous window left over the overlap."""
        if start == 0:
            out[:, : self.window] = window
            return
        fade = crossfade_weights(self.overlap)[None, :, None]
        overlap = slice(start, start + self.overlap)
        out[:, overlap] = (1.0 - fade) * out[:, overlap] + fade * window[:, : self.overlap]
        out[:, start + self.overlap : start + self.window] = window[:, self.overlap :]
