"""The evaluation config schema (`python -m evaluation.run CONFIG.yaml [key=value ...]`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from moda_train.core.motion_layout import emotion_index
from moda_train.core.rates import FPS

METRICS = ("fid", "fvd", "sync", "motion_sync", "fsim", "diversity", "smoothness", "emotion")


FID_PROTOCOLS = ("clean-fid-legacy-tf", "pytorch-fid")
FVD_PROTOCOLS = ("stylegan-v",)
SYNC_PROTOCOLS = ("syncnet_python", "whole_frame")
SYNC_DETECTORS = ("auto", "s3fd", "mediapipe")


@dataclass
class FIDConfig:
    protocol: str = "clean-fid-legacy-tf"
    """Preprocessing before InceptionV3 (docs/evaluation.md): `clean-fid-legacy-tf` = TF1 `resize_bilinear` to 299
    and (x - 128) / 128, as clean-fid's legacy_tensorflow mode, torch-fidelity and the original TF FID code;
    `pytorch-fid` = torch bilinear interpolation (align_corners=False) to 299 and x / 127.5 - 1, as pytorch-fid."""
    frames_per_video: int = 25
    """Frames per video fed to InceptionV3, evenly spaced over the compared frames (same indices for the real
    and the generated video); 0 = every frame."""
    kid: bool = False
    """Also report KID (unbiased MMD^2, cubic polynomial kernel, on the same Inception features)."""
    kid_subsets: int = 100
    """KID: number of random subsets (seeded, so KID is reproducible)."""
    kid_subset_size: int = 1000
    """KID: features per subset; capped at the smaller set's size, and then one subset is used (all subsets would
    be the same set) and no std is reported."""
    batch_size: int = 16
    """Frames per Inception forward pass."""


@dataclass
class FVDConfig:
    protocol: str = "stylegan-v"
    """`stylegan-v`: one clip per video, at a random start in the real video and at frame 0 in the generated one,
    uint8 clips given to StyleGAN-V's I3D with rescale=True, resize=True; covariances divided by N."""
    seed: int = 0
    """Seed of the real clips' random starts (with the clip key, so every clip's start is reproducible)."""
    weights: str = ""
    """I3D weights: StyleGAN-V's `i3d_torchscript.pt` or a pytorch-i3d state dict (`rgb_imagenet.pt`-style keys);
    empty = $MODA_I3D_PATH, else weights/i3d_torchscript.pt."""
    clip_frames: int = 16
    """Consecutive frames per I3D clip (StyleGAN-V: 16; I3D needs at least 10)."""
    resolution: int = 224
    """pytorch-i3d state dicts only (the TorchScript I3D resizes itself): frames resized to resolution x
    resolution (bilinear) and scaled to [-1, 1]."""
    batch_size: int = 4
    """Clips per I3D forward pass."""


@dataclass
class SyncConfig:
    protocol: str = "syncnet_python"
    """`syncnet_python`: raw videos through syncnet_python's pipeline (face detection and tracking, its crop, the
    XVID and JPEG round trips, int16 audio); `whole_frame`: the video already is a face-crop video (whole frame =
    crop). Exact steps and the remaining differences in docs/evaluation.md."""
    min_track: int = 100
    """syncnet_python: a face track needs more than this many detections (its --min_track)."""
    min_face_size: float = 100.0
    """syncnet_python: a track's mean box width or height must exceed this, in pixels (its --min_face_size)."""
    detector: str = "auto"
    """syncnet_python: face detector. `s3fd` = syncnet_python's own (S3FD, weights `sync.s3fd_weights`),
    `mediapipe` = the framework's offline detector, `auto` = S3FD when its weights file is found, else mediapipe.
    The one used is recorded in metrics.json (protocol.sync.detector)."""
    s3fd_weights: str = ""
    """S3FD weights (syncnet_python's `sfd_face.pth`); empty = $MODA_S3FD_PATH, else weights/sfd_face.pth."""
    s3fd_scale: float = 0.25
    """S3FD: frames are resized by this factor before detection (run_pipeline.py's --facedet_scale)."""
    s3fd_confidence: float = 0.9
    """S3FD: face probability a box must exceed (run_pipeline.py's conf_th)."""
    detector_confidence: float = 0.5
    """mediapipe: face detection score threshold (not S3FD's scale)."""
    weights: str = ""
    """SyncNet weights (`syncnet_v2.model` of syncnet_python); empty = $MODA_SYNCNET_PATH, else
    weights/syncnet_v2.model."""
    vshift: int = 15
    """Offsets searched: -vshift..+vshift video frames (syncnet_python's evaluation uses 15)."""
    batch_size: int = 20
    """5-frame windows per SyncNet forward pass."""
    audio: str = "generated"
    """Audio SyncNet compares with: `generated` = the generated video's own audio track (falling back to the
    clip's driving audio when the file has none), `split` = always the clip's driving audio from the split."""


@dataclass
class MotionSyncConfig:
    checkpoint: str = ""
    """ALSE lip-sync expert (a Lightning checkpoint file trained by this framework, `task: alse`) that scores the
    motion re-extracted from each video against its audio; empty = $MODA_ALSE_PATH, else weights/alse.ckpt."""
    audio_backend: str = ""
    """data_prep audio feature backend the expert was trained on (logmel, hubert); empty = the checkpoint's
    data.audio_backend."""


@dataclass
class EmotionConfig:
    checkpoint: str = ""
    """Motion-space emotion classifier (a Lightning checkpoint file trained by this framework, `task: emotion`)
    that classifies the motion re-extracted from each video; empty = $MODA_EMOTION_PATH, else
    weights/emotion.ckpt."""
    generated_for: str = ""
    """The emotion (name or class id) the clips were generated for when the split has no `emotion` value for a
    clip; with `checkpoint` it is also the emotion generation is asked for. Empty: such clips have no target
    emotion and are left out of emotion accuracy."""


@dataclass
class FSIMConfig:
    frames_per_video: int = 10
    """Generated frames per video compared with the reference photo, evenly spaced; 0 = every frame."""


@dataclass
class MotionConfig:
    extractor: str = "landmarks"
    """data_prep motion extractor that re-extracts motion from videos (diversity, smoothness, motion_sync,
    emotion)."""
    crop_size: int = 256
    """Frames are resized to this square size before extraction (the extractors expect 256 px face crops)."""


@dataclass
class DiversityConfig:
    seeds: list[int] = field(default_factory=list)
    """Seeds of extra generated samples per clip for sample diversity (at least 3 for a value); empty skips it."""
    seed_pattern: str = "{key}_seed{seed}.mp4"
    """File name of the sample with a given seed, inside generated_dir."""


@dataclass
class EvalConfig:
    name: str = ""
    """Method name for the report's title; empty = the checkpoint path, else the generated_dir."""
    ground_truth: bool = True
    """Also score the ground-truth videos with every metric that needs no reference (Sync-C/D, motion sync, pose
    spread, smoothness): the report's ground-truth column."""
    split: str = ""
    """Benchmark split: a .csv or .jsonl list (columns key, video, optional audio, optional reference_frame,
    optional reference image) or a data_prep `manifest.jsonl` (then `split_name` picks its rows)."""
    video_root: str = ""
    """Folder that relative video/audio/reference paths of the split are resolved against; empty = the split
    file's folder. For a data_prep manifest give the corpus root it was made from (its `input.root`)."""
    split_name: str = "test"
    """Which split of a data_prep manifest to evaluate (ignored for a plain list file)."""
    generated_dir: str = ""
    """Folder of generated videos, one per clip (with `checkpoint`: where they are generated, default
    <out_dir>/generated)."""
    checkpoint: str = ""
    """An MMDiT checkpoint: first generate every clip of the split from its reference frame and audio (videos
    already there are kept, so a rerun regenerates nothing), then score them. Empty: score existing videos."""
    generation_seeds: list[int] = field(default_factory=lambda: [0])
    """Seeds generated per clip with `checkpoint`; the first is the scored video, and with three or more (and
    diversity.seeds left empty) they also give sample diversity."""
    renderer: str = ""
    """Renderer of the videos generated with `checkpoint`: warp or liveportrait; empty = the one made for the
    checkpoint's motion backend (`moda_train.generation.pipeline.DEFAULT_RENDERERS`)."""
    renderer_options: dict[str, Any] = field(default_factory=dict)
    """Options of that renderer, e.g. `renderer_options.path=pretrained/liveportrait` (else
    MODA_LIVEPORTRAIT_PATH),
    `renderer_options.device=cuda`, `renderer_options.dtype=float16`."""
    generated_pattern: str = "{key}.mp4"
    """File name of a clip's generated video inside generated_dir."""
    out_dir: str = "outputs/eval"
    """Where metrics.json, report.md, the plot and the per-video cache (cache/) go."""
    metrics: list[str] = field(default_factory=lambda: list(METRICS))
    """Metrics to compute, any of fid, fvd, sync, motion_sync, fsim, diversity, smoothness, emotion."""
    fps: float = float(FPS)
    """Frame rate every video must have (all protocols assume 25 fps); a video at another rate is an error."""
    max_frames: int = 0
    """Compare at most this many frames per clip (from the start); 0 = all. Real and generated videos are always
    cut to the shorter of the two."""
    workers: int = 0
    """Processes evaluating videos in parallel (each loads its own networks); 0 = in this process."""
    threads: int = 1
    """torch threads per evaluating process (in-process or each worker); 0 = torch's default. 1 is usually
    fastest on a shared machine: oversubscribed intra-op threads slowed Inception about 3x in our measurements."""
    device: str = "cpu"
    """Torch device for the networks (cpu, cuda, cuda:1, ...)."""
    fid: FIDConfig = field(default_factory=FIDConfig)
    """FID (and optional KID) frame sampling."""
    fvd: FVDConfig = field(default_factory=FVDConfig)
    """FVD protocol and I3D weights."""
    sync: SyncConfig = field(default_factory=SyncConfig)
    """Sync-C / Sync-D protocol and SyncNet weights."""
    motion_sync: MotionSyncConfig = field(default_factory=MotionSyncConfig)
    """Motion-space lip sync (ALSE expert) on re-extracted motion."""
    fsim: FSIMConfig = field(default_factory=FSIMConfig)
    """Identity similarity frame sampling."""
    motion: MotionConfig = field(default_factory=MotionConfig)
    """Motion re-extraction for diversity, smoothness and motion_sync."""
    diversity: DiversityConfig = field(default_factory=DiversityConfig)
    """Multi-seed samples for sample diversity."""
    emotion: EmotionConfig = field(default_factory=EmotionConfig)
    """Emotion accuracy: the classifier and the emotion the clips were generated for."""

    def __post_init__(self) -> None:
        if self.checkpoint and not self.generated_dir:
            self.generated_dir = str(Path(self.out_dir) / "generated")
        if self.checkpoint and not self.generation_seeds:
            raise ValueError("generation_seeds is empty: give at least one seed")
        if self.checkpoint and len(self.generation_seeds) >= 3 and not self.diversity.seeds:
            self.diversity.seeds = list(self.generation_seeds)
        problems = [] if self.split else ["split is required (a CSV or a data_prep manifest.jsonl)"]
        if not self.generated_dir:
            problems.append(
                "nothing to score: set checkpoint= (an MMDiT checkpoint: generate the split, then score it) "
                "or generated_dir= (a folder of videos already generated)"
            )
        unknown = [m for m in self.metrics if m not in METRICS]
        if unknown:
            problems.append(f"metrics: unknown {', '.join(unknown)} (choose from {', '.join(METRICS)})")
        if self.workers < 0 or self.threads < 0:
            problems.append("workers and threads must be >= 0")
        if self.max_frames < 0 or self.fid.frames_per_video < 0 or self.fsim.frames_per_video < 0:
            problems.append("max_frames, fid.frames_per_video and fsim.frames_per_video must be >= 0")
        if self.fvd.clip_frames < 10:
            problems.append(f"fvd.clip_frames={self.fvd.clip_frames}: I3D needs at least 10 frames per clip")
        if self.fvd.resolution < 32:
            problems.append("fvd.resolution must be >= 32")
        for key, value, choices in (
            ("fid.protocol", self.fid.protocol, FID_PROTOCOLS),
            ("fvd.protocol", self.fvd.protocol, FVD_PROTOCOLS),
            ("sync.protocol", self.sync.protocol, SYNC_PROTOCOLS),
            ("sync.detector", self.sync.detector, SYNC_DETECTORS),
        ):
            if value not in choices:
                problems.append(f"{key}={value!r}: choose from {', '.join(choices)}")
        if self.sync.min_track < 1 or self.sync.min_face_size < 0:
            problems.append("sync.min_track must be >= 1 and sync.min_face_size >= 0")
        if not 0 < self.sync.s3fd_scale <= 4 or not 0 <= self.sync.s3fd_confidence < 1:
            problems.append("sync.s3fd_scale must be in (0, 4] and sync.s3fd_confidence in [0, 1)")
        if self.sync.vshift < 1:
            problems.append("sync.vshift must be >= 1")
        if self.sync.audio not in ("generated", "split"):
            problems.append(f"sync.audio={self.sync.audio!r}: choose generated or split")
        if "{key}" not in self.generated_pattern:
            problems.append(f"generated_pattern={self.generated_pattern!r} must contain {{key}}")
        if self.diversity.seeds and "{seed}" not in self.diversity.seed_pattern:
            problems.append("diversity.seed_pattern must contain {seed} (and {key})")
        if self.fps <= 0:
            problems.append("fps must be > 0")
        if self.emotion.generated_for:
            try:
                emotion_index(self.emotion.generated_for)
            except ValueError as err:
                problems.append(f"emotion.generated_for: {err}")
        if problems:
            raise ValueError("; ".join(problems))
