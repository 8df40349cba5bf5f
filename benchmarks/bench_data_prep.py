"""Data preparation speed: seconds of video prepared per CPU-second, per stage, next to pure decoding.

    python benchmarks/bench_data_prep.py                          # builds an 8-video demo corpus in a temp dir
    python benchmarks/bench_data_prep.py --videos demo/videos     # an existing demo corpus (uses its labels.csv)
    python benchmarks/bench_data_prep.py --long-minutes 10        # also: peak memory on one 10-minute input

Stages (CPU time of the process, all its threads): decode (probe, frames at 25 fps, audio at 16 kHz), face
(detection, crop track, cropping), motion (the motion backend), audio (the audio feature backend), write (encoding
and tar writing). The ceiling is pure decoding of the same files to 25 fps RGB frames plus 16 kHz audio; the
printed ratio is end-to-end throughput divided by that ceiling. Runs inline (workers=0) so CPU time is measured
in one process; N workers on N free cores multiply the throughput.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import tempfile
import time
from pathlib import Path

from data_prep.config import ShardConfig
from data_prep.shard import run
from moda_train.core.config_loader import load_config
from moda_train.core.rates import FPS, SAMPLE_RATE
from moda_train.perception.decode import FrameReader, chunk_size, output_times, probe, read_audio


def pure_decode(videos: list[Path]) -> tuple[float, float]:
    """(video seconds, CPU seconds) to decode every file to 25 fps RGB frames and 16 kHz mono audio."""
    total, begin = 0.0, time.process_time()
    for path in videos:
        info = probe(str(path))
        num_frames = int(info.duration_s * FPS)
        reader = FrameReader(str(path), info)
        for _ in reader.read(output_times(0.0, num_frames, FPS), chunk_size(*info.display_size())):
            pass
        read_audio(str(path), 0.0, num_frames / FPS, SAMPLE_RATE, origin_s=info.start_s)
        total += num_frames / FPS
    return total, time.process_time() - begin


def shard(videos_dir: Path, labels: Path | None, out: Path, *overrides: str) -> dict:
    """Run the shard pipeline inline and return its summary."""
    args = [f"input.root={videos_dir}", f"output.dir={out}", "workers=0", *overrides]
    if labels is not None:
        args.append(f"input.annotations={labels}")
    cfg, _ = load_config(None, args, schema=ShardConfig)
    return run(cfg, progress=False)


def long_input(source: Path, minutes: float, folder: Path) -> Path:
    """One long video made by looping a demo video (stream copy: no re-encoding)."""
    import imageio_ffmpeg

    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "long.mp4"
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-stream_loop", "-1", "-i", str(source)]
    subprocess.run([*command, "-t", str(minutes * 60), "-c", "copy", str(target)], check=True)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=Path, help="demo corpus folder (default: build one in a temp dir)")
    parser.add_argument("--num-videos", type=int, default=8, help="videos to build when --videos is not given")
    parser.add_argument("--long-minutes", type=float, default=0.0, help="also measure peak memory on a long input")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-data-prep-") as tmp:
        tmp = Path(tmp)
        videos_dir = args.videos
        if videos_dir is None:
            from data_prep.demo_corpus import build_corpus

            videos_dir = tmp / "videos"
            build_corpus(videos_dir, num_videos=args.num_videos, seconds=5.0, workers=1, progress=False)
        labels = videos_dir / "labels.csv"
        videos = sorted(videos_dir.glob("*.mp4"))
        decoded, decode_cpu = pure_decode(videos)
        summary = shard(videos_dir, labels if labels.is_file() else None, tmp / "shards")
        measured = summary["this_run"]
        rates = measured["video_seconds_per_cpu_second"]
        ceiling = decoded / decode_cpu
        print(f"corpus: {len(videos)} videos, {decoded:.1f} s of video; clips written: {summary['clips']}")
        print(f"{'stage':<10}{'CPU s':>10}{'video s / CPU s':>18}")
        print(f"{'(pure decode)':<10}{decode_cpu:>7.2f}{ceiling:>18.2f}")
        for stage, seconds in measured["cpu_seconds"].items():
            rate = rates[stage]
            print(f"{stage:<10}{seconds:>10.2f}{rate if rate is None else f'{rate:.2f}':>18}")
        print(f"{'all':<10}{sum(measured['cpu_seconds'].values()):>10.2f}{rates['all']:>18.2f}")
        print(f"end-to-end / pure decode = {rates['all'] / ceiling:.3f}")
        report = {"pure_decode_video_s_per_cpu_s": round(ceiling, 2), **measured}

        if args.long_minutes > 0:
            long_dir = tmp / "long"
            long_input(videos[0], args.long_minutes, long_dir)
            before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            long_summary = shard(long_dir, None, tmp / "long_shards", "clip.max_seconds=60")
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(
                f"long input: {args.long_minutes:g} min -> {sum(long_summary['clips'].values())} clips; peak RSS "
                f"{peak:.0f} MB (before: {before:.0f} MB)"
            )
            report["long_input"] = {
                "minutes": args.long_minutes,
                "peak_rss_mb": round(peak),
                "before_mb": round(before),
            }
        print(json.dumps(report))


if __name__ == "__main__":
    main()
