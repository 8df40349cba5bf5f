"""Talking-head videos from a photo and speech with a trained MMDiT checkpoint.

    moda-generate --checkpoint runs/mmdit_tiny_cpu/checkpoints/last.ckpt \\
        --image photo.jpg --audio speech.wav --seeds 0 1 2 --out outputs/generated

writes `<out>/<name>_seed<k>.mp4` (25 fps, the input audio muxed in) and `<name>_seed<k>.npy` (the generated
motion, float32 [T, 70] real units) per seed. The pipeline is `moda_train.generation.pipeline`; from Python use
`generate_video(...)` for one photo + audio and `moda_train.generation.split.generate_split(...)` for every clip of
a benchmark split.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from moda_train.generation.inputs import load_image, load_speech


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
        prog="moda-generate",
        description="Generate talking-head videos from a photo and speech with a trained MMDiT checkpoint.",
    )
    parser.add_argument("--checkpoint", required=True, help="MMDiT checkpoint (.ckpt) from moda_train.train")
    parser.add_argument(
        "--image", required=True, help="reference photo with one face (jpg, png, ...), or a video: its first frame"
    )
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
        "--motion-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="motion extractor option, value read as YAML (e.g. path=pretrained/liveportrait crop=box)",
    )
    parser.add_argument(
        "--renderer", default="", help="warp or liveportrait (default: the one for the motion backend)"
    )
    parser.add_argument(
        "--renderer-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="renderer option, value read as YAML (e.g. path=pretrained/liveportrait batch_size=8 dtype=float16)",
    )
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: 0 on success, 1 with a one-line error for bad input.

    The photo, the speech and the checkpoint path are checked before torch and the model are imported (which
    takes seconds), so a wrong file fails at once.
    """
    args = build_parser().parse_args(argv)
    try:
        photo, wave = load_image(args.image), load_speech(args.audio)
        if not Path(args.checkpoint).exists():
            raise FileNotFoundError(f"checkpoint not found: {args.checkpoint} (train one with moda-train)")
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    import torch

    from moda_train.generation.pipeline import generate_video

    if args.threads:
        torch.set_num_threads(args.threads)
    with warnings.catch_warnings():
        # library warnings (e.g. audio shorter than one window) as one plain line each, when they happen
        warnings.simplefilter("default")
        warnings.showwarning = lambda message, *rest, **kw: print(f"warning: {message}", file=sys.stderr)
        try:
            paths = generate_video(
                args.checkpoint,
                photo,
                wave,
                args.out,
                emotion=args.emotion,
                guidance_audio=args.guidance_audio,
                guidance_emotion=args.guidance_emotion,
                seeds=args.seeds,
                name=args.name or f"{Path(args.image).stem}_{Path(args.audio).stem}",
                progress=not args.no_progress,
                steps=args.steps,
                audio_backend=args.audio_backend,
                audio_options=_key_values(args.audio_option, "--audio-option"),
                motion_backend=args.motion_backend,
                motion_options={  # YAML values: native_expression=false is a bool, batch_size=8 an int
                    k: yaml.safe_load(v) for k, v in _key_values(args.motion_option, "--motion-option").items()
                },
                renderer=args.renderer or None,
                renderer_options={
                    k: yaml.safe_load(v) for k, v in _key_values(args.renderer_option, "--renderer-option").items()
                },
            )
        except (FileNotFoundError, ValueError, ImportError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
    for path in paths:
        print(f"{path}  (motion: {path.with_suffix('.npy')})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
