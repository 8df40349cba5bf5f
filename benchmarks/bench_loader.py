"""Is the data loader ever what limits training? Windows/s of the training loader with no model, next to the speed
of merely reading the same shard bytes, measured side by side in one run.

    python benchmarks/bench_loader.py --shards 'demo/shards/train-*.tar' --stats demo/shards/stats.json
    python benchmarks/bench_loader.py            # synthetic shards (written to a temporary folder)

Compare the printed windows/s with the training step's windows/s (benchmarks/bench_mmdit.py): the loader must be
far faster per worker than a training step consumes.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

from webdataset.tariterators import tarfile_samples

from moda_train.core.stats import MotionStats
from moda_train.data.config import DataConfig
from moda_train.data.datamodule import MotionDataModule
from moda_train.data.synthetic import write_synthetic_shards
from moda_train.data.wds import SkipCounter, decode_clips, expand_urls, random_windows


def windows_in(urls: list[str], cfg: DataConfig) -> int:
    """How many windows one pass over the shards yields (the loader's cutting rule)."""
    stats = MotionStats.load(cfg.stats_path)
    clips = decode_clips(tarfile_samples({"url": u} for u in urls), stats, SkipCounter())
    return sum(1 for _ in random_windows(clips, cfg.window_frames, cfg.prev_frames, random.Random(0)))


def raw_windows_per_second(urls: list[str], windows_per_pass: int, repeats: int) -> float:
    """The ceiling: read the shards' bytes and split the tar members, decoding nothing."""
    start = time.perf_counter()
    for _ in range(repeats):
        for _ in tarfile_samples({"url": u} for u in urls):
            pass
    return windows_per_pass * repeats / (time.perf_counter() - start)


def loader_windows_per_second(cfg: DataConfig, batch_size: int, epochs: int) -> tuple[float, int]:
    datamodule = MotionDataModule(cfg, micro_batch_size=batch_size, seed=0)
    datamodule.setup()
    loader = datamodule.train_dataloader()
    start, windows = time.perf_counter(), 0
    for _ in range(epochs):
        for batch in loader:
            windows += len(batch["motion"])
    return windows / (time.perf_counter() - start), windows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shards", default="", help="training shards (default: synthetic ones)")
    parser.add_argument("--stats", default="", help="stats.json of the shards")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--windows", type=int, default=512, help="windows per epoch")
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        shards, stats = args.shards, args.stats
        if not shards:
            folder = write_synthetic_shards(Path(scratch), num_clips=32, frames=250, clips_per_shard=8)
            shards, stats = str(folder / "train-*.tar"), str(folder / "stats.json")
        urls = [url for source in expand_urls(shards) for url in source.urls]
        cfg = DataConfig(
            train_shards=shards, stats_path=stats, samples_per_epoch=args.windows, num_workers=args.workers
        )
        rate, windows = loader_windows_per_second(cfg, args.batch_size, args.epochs)
        raw = raw_windows_per_second(urls, windows_in(urls, cfg), repeats=args.epochs)
    print(f"loader (decode, cut, normalise, shuffle, batch): {rate:9.1f} windows/s ({args.workers} worker(s))")
    print(f"raw tar read of the same shards:                  {raw:9.1f} windows/s")
    print(f"loader / raw read: {rate / raw:.2f}")


if __name__ == "__main__":
    main()
