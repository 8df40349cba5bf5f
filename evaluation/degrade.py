"""Degraded copies of ground-truth videos: a sanity check of the metrics before any generator exists.

    python -m evaluation.degrade --videos demo/videos --out demo/eval --kinds copy blur shifted

writes `<out>/split.csv` (one row per mp4 in --videos: key = file stem, video, reference_frame 0) and, per kind,
`<out>/<kind>/<key>.mp4`, re-encoded like any generated video (H.264 + AAC, 25 fps). Evaluate one with
`python -m evaluation.run configs/eval/demo.yaml generated_dir=<out>/<kind>`. Kinds and what they should move:

    copy      unchanged frames and audio: the baseline (FID near 0, F-SIM near 1)
    blur      Gaussian blur of sigma 3 px: FID up, F-SIM down
    shifted   audio delayed by 10 frames (400 ms): with SyncNet weights the AV offset becomes about -10 (the
              video leads the audio); Sync-C/D are taken at the best offset and move less; frame metrics unchanged
    frozen    the first frame repeated: head-pose spread and motion jerk down to about 0
    jitter    every frame translated by up to 6 px (seeded): motion jerk and frame acceleration up
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from evaluation.video import read_video
from moda_train.core.rates import SAMPLES_PER_FRAME

SHIFT_FRAMES = 10
BLUR_SIGMA = 3.0
JITTER_PIXELS = 6.0


def _blur(frames: np.ndarray, audio: np.ndarray, rng: np.random.Generator):
    return np.stack([cv2.GaussianBlur(f, (0, 0), BLUR_SIGMA) for f in frames]), audio


def _shifted(frames: np.ndarray, audio: np.ndarray, rng: np.random.Generator):
    delay = SHIFT_FRAMES * SAMPLES_PER_FRAME
    return frames, np.concatenate([np.zeros(delay, np.float32), audio])[: len(audio)]


def _frozen(frames: np.ndarray, audio: np.ndarray, rng: np.random.Generator):
    return np.repeat(frames[:1], len(frames), axis=0), audio


def _jitter(frames: np.ndarray, audio: np.ndarray, rng: np.random.Generator):
    height, width = frames.shape[1:3]
    moved = []
    for frame in frames:
        dx, dy = rng.uniform(-JITTER_PIXELS, JITTER_PIXELS, 2)
        shift = np.float32([[1, 0, dx], [0, 1, dy]])
        moved.append(cv2.warpAffine(frame, shift, (width, height), borderMode=cv2.BORDER_REFLECT))
    return np.stack(moved), audio


DEGRADATIONS: dict[str, Callable] = {
    "copy": lambda frames, audio, rng: (frames, audio),
    "blur": _blur,
    "shifted": _shifted,
    "frozen": _frozen,
    "jitter": _jitter,
}


def make_degraded_split(videos: list[Path], out_dir: Path, kinds: list[str], seed: int = 0) -> Path:
    """Write out_dir/split.csv for `videos` and out_dir/<kind>/<key>.mp4 for every kind; return the split path."""
    from moda_train.perception.audio import load_audio
    from moda_train.perception.video_io import write_video

    unknown = [k for k in kinds if k not in DEGRADATIONS]
    if unknown or not videos:
        raise ValueError(
            f"unknown kinds {unknown} (choose from {', '.join(DEGRADATIONS)})" if unknown else "no videos"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = ["key,video,reference_frame"]
    for path in sorted(videos):
        rows.append(f"{path.stem},{path.resolve()},0")
        video, audio = read_video(path), load_audio(path)
        for kind in kinds:
            frames, wave = DEGRADATIONS[kind](video.frames, audio, rng)
            write_video(out_dir / kind / f"{path.stem}.mp4", frames, fps=video.fps, audio=wave)
    split = out_dir / "split.csv"
    split.write_text("\n".join(rows) + "\n")
    return split


def main(argv: list[str] | None = None) -> int:
    """CLI: see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", required=True, help="folder of ground-truth mp4 files")
    parser.add_argument("--out", required=True, help="output folder (split.csv and one folder per kind)")
    parser.add_argument("--kinds", nargs="+", default=list(DEGRADATIONS), help=f"any of {', '.join(DEGRADATIONS)}")
    parser.add_argument("--seed", type=int, default=0, help="seed of the jitter")
    args = parser.parse_args(argv)
    videos = sorted(Path(args.videos).glob("*.mp4"))
    if not videos:
        parser.error(f"no .mp4 files in {args.videos}")
    try:
        split = make_degraded_split(videos, Path(args.out), args.kinds, args.seed)
    except ValueError as err:
        parser.error(str(err))
    print(f"{len(videos)} clips x {len(args.kinds)} kinds in {args.out}; split: {split}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
