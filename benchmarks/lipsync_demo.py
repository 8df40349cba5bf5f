"""Does generated lip motion follow the audio? A measured comparison on the demo corpus's held-out speakers.

    python benchmarks/lipsync_demo.py --checkpoint runs/mmdit_tiny_cpu/checkpoints/last.ckpt

For every clip of the shard set's `--split` (default val: speakers the model never saw), the checkpoint generates
two videos from the clip's first frame through `moda_train.generate.generate_split` (cached in `--out`):
`own`, driven by the clip's own audio, and `swap`, driven by the audio of another clip (the next one in the list).
The lip motion of each generated mp4 is then re-extracted from its decoded frames with the `landmarks` motion
extractor (what evaluation does to real videos) and reduced to one number per frame, the mouth opening (inner
lower lip minus inner upper lip, y, in the canonical face frame). Two scores per video, both against the clip's
OWN audio and video:

    envelope r   Pearson correlation of the mouth opening with the loudness envelope of the clip's own speech
                 (RMS per 40 ms frame, `data_prep.demo_corpus.speech_envelope`: the signal that drove the demo
                 corpus's mouths)
    truth r      Pearson correlation with the mouth opening re-extracted the same way from the real clip

`npy r` correlates the generated motion itself (the saved `.npy`, before rendering) with the envelope.
`replay env r` is a control for the measuring chain: the real clip's own re-extracted motion, rendered by the same
`WarpRenderer` onto its first frame and re-extracted again, against the envelope (the best a generated video can
score through this renderer). A model that lip-syncs scores higher on `own` than on `swap` (where the mouth follows
some other speech); the ground-truth videos' own envelope r is printed as the ceiling. Prints a table per clip and
the means.

A second table compares the amplitude of the `own` mouth opening with the real clip's, with
`moda_train.metrics.motion.mouth_amplitude` (std over time as a ratio to the real clip's, share of frames open
above the midpoint of the real clip's 10th and 90th percentiles, timing r), at two levels: `video` (re-extracted
from the generated mp4, what a viewer sees) and `motion` (the saved `.npy`, what the model produced), both against
the mouth opening re-extracted from the real clip; `replay` is the same chain control as above (the real motion
through `WarpRenderer`), i.e. the amplitude the renderer and re-extraction keep. `--guidance-audio` and `--steps`
sample with other settings than the checkpoint's (use another `--out` for each: generated videos are cached).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from data_prep.demo_corpus import speech_envelope
from moda_train.core.rates import FPS, SAMPLE_RATE
from moda_train.generation.pipeline import reference_face
from moda_train.generation.render import ReferenceFace, WarpRenderer
from moda_train.generation.split import generate_split
from moda_train.metrics.motion import mouth_amplitude, mouth_opening
from moda_train.perception.audio import load_audio
from moda_train.perception.config import FaceConfig
from moda_train.perception.decode import FrameReader, probe
from moda_train.perception.face_crop import FaceDetector, crop_frames
from moda_train.perception.motion import MotionSequence, get_motion_extractor


def video_frames(path: Path) -> np.ndarray:
    """All frames of a 25 fps video, uint8 [T, H, W, 3]."""
    count = int(round(probe(str(path)).duration_s * FPS))
    return np.concatenate(list(FrameReader(str(path)).read(np.arange(count) / FPS, chunk=256)))


def crop_motion(frames: np.ndarray, box: np.ndarray, extractor) -> MotionSequence:
    """Motion of video frames cropped with one fixed face box (the first frame is the reference)."""
    crops = crop_frames(frames, np.repeat(box[None], len(frames), axis=0), FaceConfig().crop_size)
    return extractor.extract(crops)


def video_opening(frames: np.ndarray, box: np.ndarray, extractor) -> np.ndarray:
    """Per-frame mouth opening [T] re-extracted from video frames cropped with one fixed face box."""
    return mouth_opening(crop_motion(frames, box, extractor).motion)


def replay(real: np.ndarray, box: np.ndarray, extractor) -> np.ndarray:
    """Control for the render -> re-extract chain: the real clip's own motion rendered by WarpRenderer onto its
    first frame, then re-extracted; returns the mouth opening [T]."""
    sequence = crop_motion(real, box, extractor)
    reference = ReferenceFace(real[0], box, FaceConfig().crop_size, sequence.motion[0], sequence.identity)
    rendered = np.stack(list(WarpRenderer().render(reference, sequence.motion)))
    return video_opening(rendered, box, extractor)


def saved_gap(video: Path, seed: int) -> np.ndarray:
    """Mouth opening [T] of the motion generate_split saved beside a generated video."""
    return mouth_opening(np.load(video.with_name(f"{video.stem}_seed{seed}.npy")))


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    n = min(len(a), len(b))
    a, b = a[:n] - a[:n].mean(), b[:n] - b[:n].mean()
    denominator = np.sqrt((a**2).sum() * (b**2).sum())
    return float((a * b).sum() / denominator) if denominator > 0 else 0.0


def split_videos(shards: Path, videos: Path, split: str) -> list[tuple[str, Path]]:
    """(key, source video) of the clips of one split, from the shard set's manifest (sources relative to the
    corpus folder `videos`)."""
    rows = [json.loads(line) for line in (shards / "manifest.jsonl").read_text().splitlines() if line.strip()]
    clips = [
        (r["key"], videos / r["source"]) for r in rows if r["split"] == split and r.get("status", "ok") == "ok"
    ]
    if len(clips) < 2:
        raise SystemExit(f"{shards}/manifest.jsonl has {len(clips)} {split} clip(s); the comparison needs >= 2")
    return clips


def print_amplitudes(clips: list[dict], means: dict) -> None:
    """The amplitude table: per clip and level, std ratio, open frames (generated / real) and timing r."""
    print(
        "\nmouth amplitude of `own` against the real clip (std ratio, share of frames open: generated / real, r)"
    )
    print(f"{'clip':<24} " + " ".join(f"{level + ' ' + c:>20}" for level in means for c in ("std", "open", "r")))
    for name, row in [(c["clip"], c) for c in clips] + [(f"mean over {len(clips)} clips", means)]:
        cells = []
        for level in means:
            a = row[level]
            cells += [f"{a['std_ratio']:.3f}", f"{a['open_share']:.2f} / {a['open_share_truth']:.2f}"]
            cells.append(f"{a['timing_r']:.3f}")
        print(f"{name:<24} " + " ".join(f"{c:>20}" for c in cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="MMDiT checkpoint trained on the demo shards")
    parser.add_argument("--shards", default="demo/shards", help="the demo shard set (manifest.jsonl)")
    parser.add_argument("--videos", default="demo/videos", help="the demo corpus folder the shards were made from")
    parser.add_argument("--split", default="val", help="split whose clips are used (default: val)")
    parser.add_argument("--out", default="outputs/lipsync_demo", help="generated videos (cached) and results")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--guidance-audio", type=float, help="audio guidance scale (default: the checkpoint's)")
    parser.add_argument("--steps", type=int, help="Euler steps (default: the checkpoint's)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    clips = split_videos(Path(args.shards), Path(args.videos), args.split)
    rows = []
    for index, (key, video) in enumerate(clips):
        other = clips[(index + 1) % len(clips)][1]
        rows.append({"key": f"{key}_own", "video": str(video), "audio": str(video)})
        rows.append({"key": f"{key}_swap", "video": str(video), "audio": str(other)})
    out = Path(args.out)
    sampling = {"guidance_audio": args.guidance_audio, "steps": args.steps}
    generated = generate_split(args.checkpoint, rows, out / "videos", seeds=(args.seed,), **sampling)

    extractor, detector = get_motion_extractor("landmarks"), FaceDetector(FaceConfig())
    results, amplitudes = [], []
    columns = (
        "truth env r",
        "replay env r",
        "own env r",
        "swap env r",
        "own truth r",
        "swap truth r",
        "own npy r",
        "swap npy r",
    )
    print(f"{'clip':<24} " + " ".join(f"{c:>12}" for c in columns))
    for key, video in clips:
        real = video_frames(video)
        # One crop box for the real clip and both generated videos: the face found in the real first frame,
        # which is also the reference photo of the generated ones (they are rendered onto it).
        box = reference_face(real[0], extractor, detector=detector).box
        truth = video_opening(real, box, extractor)
        envelope = speech_envelope(load_audio(video, SAMPLE_RATE), len(real))
        own = video_opening(video_frames(generated[f"{key}_own"]), box, extractor)
        swap = video_opening(video_frames(generated[f"{key}_swap"]), box, extractor)
        replayed = replay(real, box, extractor)
        own_motion = saved_gap(generated[f"{key}_own"], args.seed)
        row = {
            "clip": key,
            "truth_envelope_r": pearson(truth, envelope),
            "replay_envelope_r": pearson(replayed, envelope),
            "own_envelope_r": pearson(own, envelope),
            "swap_envelope_r": pearson(swap, envelope),
            "own_truth_r": pearson(own, truth),
            "swap_truth_r": pearson(swap, truth),
            # the generated motion itself (before rendering and re-extraction) against the envelope
            "own_motion_envelope_r": pearson(own_motion, envelope),
            "swap_motion_envelope_r": pearson(saved_gap(generated[f"{key}_swap"], args.seed), envelope),
        }
        results.append(row)
        print(f"{key:<24} " + " ".join(f"{row[k]:>12.3f}" for k in list(row)[1:]))
        levels = {"video": own, "motion": own_motion, "replay": replayed}
        amplitudes.append({"clip": key} | {level: mouth_amplitude(o, truth) for level, o in levels.items()})
    means = {k: float(np.mean([r[k] for r in results])) for k in results[0] if k != "clip"}
    print(f"{'mean over ' + str(len(results)) + ' clips':<24} " + " ".join(f"{v:>12.3f}" for v in means.values()))
    amplitude_means = {
        level: {k: float(np.mean([a[level][k] for a in amplitudes])) for k in amplitudes[0][level]}
        for level in ("video", "motion", "replay")
    }
    print_amplitudes(amplitudes, amplitude_means)
    (out / "lipsync.json").write_text(
        json.dumps(
            {
                "checkpoint": args.checkpoint,
                "sampling": sampling,
                "clips": results,
                "mean": means,
                "amplitude": {"clips": amplitudes, "mean": amplitude_means},
            },
            indent=1,
        )
    )
    print(f"results: {out / 'lipsync.json'}")


if __name__ == "__main__":
    main()
