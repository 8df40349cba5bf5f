"""Real-time factor of generation on this machine: motion (audio features + 10 guided Euler steps per window) and
rendering (weight-free warp renderer, plus H.264 encoding), separately, for 10 s of speech.

    python benchmarks/bench_generation.py                          # tiny and MoDA-B configs, 1 thread
    python benchmarks/bench_generation.py --only tiny --seconds 10 --threads 2 --json out.json

`--liveportrait-frames N` also times the LivePortrait renderer at the released network sizes (random weights):
frames/s of 512 px faces pasted into the astronaut photo, `--liveportrait-batch` frames per network call, on
`--liveportrait-device` in `--liveportrait-dtype` (float16 needs a GPU).

Real-time factor (RTF) = compute seconds / seconds of audio: below 1 is faster than real time. Both wall-clock
and CPU seconds (`time.process_time`, all threads of the process) are reported: on a machine shared with other
jobs the wall clock measures the contention, while CPU seconds / threads estimates the wall time on an idle
machine. Weights are random (timing does not depend on them). The tiny config uses the `logmel` audio backend it
is trained with; MoDA-B uses the `hubert` backend on a randomly initialised HuBERT-base (12 layers x 768, saved to
a temporary folder and loaded through the real backend), so its audio time is HuBERT-base's. Rendering animates
scikit-image's astronaut photo (512 x 512) with the generated motion; it does not depend on the model size, so it
is timed once.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

from moda_train.core.config_loader import CONFIGS_ROOT
from moda_train.core.motion_layout import MOTION_DIM
from moda_train.core.rates import SAMPLE_RATE
from moda_train.experiment import load_experiment
from moda_train.generation.motion_generator import MotionGenerator
from moda_train.lit.mmdit_module import MoDALightningModule
from moda_train.perception.audio import get_audio_extractor
from moda_train.perception.video_io import write_video

SETUPS = {"tiny": "mmdit_tiny_cpu.yaml", "moda_b": "mmdit_moda_b.yaml"}


def speech(seconds: float) -> np.ndarray:
    """A voiced, syllable-modulated wave at 16 kHz (timing needs no real speech)."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    envelope = np.clip(np.sin(2 * np.pi * 3.5 * t), 0, None) ** 2
    return (0.3 * envelope * np.sin(2 * np.pi * 140 * t)).astype(np.float32)


def random_module(experiment: str) -> MoDALightningModule:
    """The experiment's MMDiT with random weights (adaLN outputs perturbed so every block does real work)."""
    _, tree = load_experiment(CONFIGS_ROOT / "experiments" / experiment, ["data.stats_path=unused/stats.json"])
    torch.manual_seed(0)
    module = MoDALightningModule(OmegaConf.to_container(tree, resolve=True)).eval()
    with torch.no_grad():
        for p in module.ema.parameters():
            if not p.any():
                p.normal_(std=0.02)
    return module


def random_hubert_base(folder: Path) -> str:
    """A randomly initialised HuBERT-base checkpoint folder, loadable by the `hubert` audio backend."""
    import transformers

    torch.manual_seed(0)
    transformers.HubertModel(transformers.HubertConfig()).save_pretrained(folder)
    transformers.Wav2Vec2FeatureExtractor(do_normalize=True).save_pretrained(folder)
    return str(folder)


def time_motion(name: str, seconds: float, workdir: Path) -> tuple[dict, np.ndarray]:
    """RTF of audio features and of sampling for `seconds` of speech with config `name`; the motion too."""
    module = random_module(SETUPS[name])
    backend = module.cfg.data.audio_backend
    options = {"path": random_hubert_base(workdir / "hubert")} if backend == "hubert" else {}
    extractor = get_audio_extractor(backend, **options)
    generator = MotionGenerator(module, extractor, steps=10, guidance_audio=1.15, guidance_emotion=1.15)
    wave = speech(seconds)
    generator.generate(speech(1.0), np.zeros(63), np.zeros(MOTION_DIM))  # warm-up: thread pool, allocator
    with Timer() as audio_time:
        windows = [generator.window_audio(wave, s) for s in range(0, int(seconds * 25), 64)]
    with Timer() as total_time:
        motion = generator.generate(wave, np.zeros(63), module.motion_mean.numpy(), seeds=[0])[0]
    # generate() extracts the same windows' audio itself: sampling = total - audio
    params = sum(p.numel() for p in module.model.parameters())
    return {
        "config": name,
        "parameters": params,
        "audio_backend": backend,
        "windows": len(windows),
        **audio_time.report("audio_features", seconds),
        **total_time.report("motion_total", seconds),
        "rtf_sampling_only_wall": round((total_time.wall - audio_time.wall) / seconds, 3),
    }, motion


def time_render(motion: np.ndarray, seconds: float, workdir: Path) -> dict:
    """RTF of rendering the motion on the astronaut photo, and of encoding the frames to mp4."""
    from skimage import data

    from moda_train.generation.pipeline import reference_face
    from moda_train.generation.render import WarpRenderer
    from moda_train.perception.motion import get_motion_extractor

    reference = reference_face(data.astronaut(), get_motion_extractor("landmarks"))
    # Generated motion from random weights is arbitrary: drive the photo with its own motion plus the generated
    # expression scaled into a plausible range, so the warp does the work a real video would need.
    driven = np.repeat(reference.motion[None], len(motion), axis=0)
    driven[:, :63] += 0.05 * np.tanh(motion[:, :63])
    with Timer() as render_time:
        frames = list(WarpRenderer().render(reference, driven))
    with Timer() as encode_time:
        write_video(workdir / "bench.mp4", frames, fps=25, audio=speech(seconds))
    return {
        "frames": len(frames),
        "size": list(frames[0].shape[:2]),
        **render_time.report("render", seconds),
        **encode_time.report("encode", seconds),
    }


def time_liveportrait(frames: int, batch: int, device: str, dtype: str) -> dict:
    """Frames/s of the LivePortrait renderer (released sizes, random weights) on the astronaut photo."""
    from skimage import data

    from moda_train.generation.liveportrait_render import LivePortraitRenderer
    from moda_train.generation.render import ReferenceFace
    from moda_train.perception.liveportrait import RendererNetworks

    torch.manual_seed(0)
    renderer = LivePortraitRenderer(networks=RendererNetworks(), device=device, dtype=dtype, batch_size=batch)
    rng = np.random.default_rng(0)
    motion = np.zeros(MOTION_DIM, dtype=np.float32)
    motion[63] = 1.0  # scale
    face = ReferenceFace(
        data.astronaut(), np.array([250.0, 190.0, 220.0]), 256, motion, rng.uniform(-0.5, 0.5, 63), "liveportrait"
    )
    driven = np.repeat(motion[None], frames + batch, axis=0)
    driven[:, :63] += rng.normal(scale=0.02, size=(len(driven), 63))
    list(renderer.render(face, driven[:batch]))  # warm-up: allocator, kernels
    with Timer() as render_time:
        count = sum(1 for _ in renderer.render(face, driven[batch:]))
    return {
        "renderer": "liveportrait",
        "device": device,
        "dtype": dtype,
        "batch": batch,
        "frames": count,
        "face_px": 512,
        "wall_s": round(render_time.wall, 2),
        "frames_per_s_wall": round(count / render_time.wall, 3),
        "frames_per_s_cpu": round(count / render_time.cpu, 3),
    }


class Timer:
    """Wall-clock and process CPU seconds of a `with` block."""

    def __enter__(self) -> Timer:
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self.wall = time.perf_counter() - self._wall
        self.cpu = time.process_time() - self._cpu

    def report(self, name: str, seconds: float) -> dict:
        """Seconds and real-time factors (wall and CPU) under `name`."""
        return {
            f"{name}_wall_s": round(self.wall, 2),
            f"{name}_cpu_s": round(self.cpu, 2),
            f"rtf_{name}_wall": round(self.wall / seconds, 3),
            f"rtf_{name}_cpu": round(self.cpu / seconds, 3),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=list(SETUPS), default=None, help="time one config only")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds of speech (default: 10)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    parser.add_argument("--liveportrait-frames", type=int, default=0, help="time the LivePortrait renderer")
    parser.add_argument("--liveportrait-batch", type=int, default=8, help="frames per renderer call (default 8)")
    parser.add_argument("--liveportrait-device", default="cpu", help="device of the LivePortrait renderer")
    parser.add_argument("--liveportrait-dtype", default="float32", help="float32, or float16 on a GPU")
    parser.add_argument("--skip-motion", action="store_true", help="time only the LivePortrait renderer")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.skip_motion and args.liveportrait_frames < 1:
        parser.error("--skip-motion times only the LivePortrait renderer: give --liveportrait-frames N")
    if args.skip_motion:
        print(json.dumps(time_liveportrait(
            args.liveportrait_frames, args.liveportrait_batch, args.liveportrait_device, args.liveportrait_dtype
        )))  # fmt: skip
        return
    results = {"seconds_of_audio": args.seconds, "threads": args.threads, "motion": [], "render": None}
    with tempfile.TemporaryDirectory(prefix="moda-bench-") as tmp:
        for name in [args.only] if args.only else list(SETUPS):
            row, motion = time_motion(name, args.seconds, Path(tmp))
            results["motion"].append(row)
            print(json.dumps(row))
            if results["render"] is None:
                results["render"] = time_render(motion, args.seconds, Path(tmp))
                print(json.dumps(results["render"]))
    if args.liveportrait_frames:
        results["liveportrait"] = time_liveportrait(
            args.liveportrait_frames, args.liveportrait_batch, args.liveportrait_device, args.liveportrait_dtype
        )
        print(json.dumps(results["liveportrait"]))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
