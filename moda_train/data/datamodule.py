"""LightningDataModule over data_prep's shards: fixed-length epochs on every rank, exact fast-forward on resume."""

from __future__ import annotations

import itertools
import multiprocessing
from collections.abc import Iterator

import lightning as L
import torch
from typing_extensions import override

from moda_train.core.stats import MotionStats
from moda_train.data.config import DataConfig
from moda_train.data.wds import ValidationDataset, WindowDataset, expand_urls


class SharedEpoch:
    """The epoch number, visible to persistent loader workers (they reseed from it when an epoch starts)."""

    def __init__(self, epoch: int = 0) -> None:
        self.value = multiprocessing.Value("i", epoch)

    def set_value(self, epoch: int) -> None:
        self.value.value = epoch

    def get_value(self) -> int:
        return self.value.value


class EpochLoader:
    """A DataLoader over an endless stream, cut into epochs of `batches_per_epoch` batches on every rank.

    Cutting here (not per worker) keeps the count independent of num_workers, so every rank steps the same
    number of times and DDP never waits on a rank that ran dry. The loader keeps its own data position
    (batches trained on, over all epochs): epoch `e` of the stream is a pure function of (seed, e, rank, worker),
    so a resumed run re-enters its epoch and skips the batches already trained on, landing on exactly the batch
    an uninterrupted run would see next. Lightning's own epoch counter is not used for this, because it does not
    survive every kind of stop (a run ended by max_steps mid-epoch resumes in Lightning's next epoch).
    """

    def __init__(
        self,
        loader: torch.utils.data.DataLoader,
        shared_epoch: SharedEpoch,
        batches_per_epoch: int,
        position: int = 0,
    ) -> None:
        self.loader, self.shared_epoch, self.batches_per_epoch = loader, shared_epoch, batches_per_epoch
        self.position = position

    def __len__(self) -> int:
        return self.batches_per_epoch

    def __iter__(self) -> Iterator[dict]:
        # A generator, so nothing moves until the first batch is asked for (Lightning calls iter() once just to
        # check that the loader is iterable).
        epoch, skip = divmod(self.position, self.batches_per_epoch)
        self.shared_epoch.set_value(epoch)
        self.position = (epoch + 1) * self.batches_per_epoch  # where the next iteration starts
        # Fast-forward by reading (not training on) the consumed batches: exact, and no slower than loading them.
        yield from itertools.islice(iter(self.loader), skip, self.batches_per_epoch)


class MotionDataModule(L.LightningDataModule):
    def __init__(self, cfg: DataConfig, micro_batch_size: int, seed: int = 0) -> None:
        super().__init__()
        self.cfg, self.micro_batch_size, self.seed = cfg, micro_batch_size, seed
        self.stats: MotionStats | None = None
        self.shared_epoch = SharedEpoch()
        self._resume_position = 0

    @override
    def setup(self, stage: str | None = None) -> None:
        self.stats = MotionStats.load(self.cfg.stats_path)
        if (
            self.cfg.audio_backend
            and self.stats.audio_backend
            and self.cfg.audio_backend != self.stats.audio_backend
        ):
            raise ValueError(
                f"data.audio_backend={self.cfg.audio_backend!r} but the shards in {self.cfg.stats_path} were made "
                f"with {self.stats.audio_backend!r}: re-shard, or change the config"
            )

    def batches_per_epoch(self, world_size: int) -> int:
        return max(1, self.cfg.samples_per_epoch // (self.micro_batch_size * world_size))

    @override
    def train_dataloader(self) -> EpochLoader:
        if self.trainer is None:
            return self.train_loader(rank=0, world_size=1)
        return self.train_loader(self.trainer.global_rank, self.trainer.world_size)

    def train_loader(self, rank: int, world_size: int) -> EpochLoader:
        """Rank `rank`'s training stream: its own seeded draw of shards and windows (see wds.py), cut into epochs
        of the same length on every rank."""
        dataset = WindowDataset(
            expand_urls(self.cfg.train_shards),
            self.stats,
            self.cfg.window_frames,
            self.cfg.prev_frames,
            self.micro_batch_size,
            self.cfg.shuffle_buffer,
            self.seed,
            self.shared_epoch,
            self.cfg.audio_backend,
            rank,
            self.cfg.max_consecutive_skips,
        )
        loader = torch.utils.data.DataLoader(
            dataset,
            batch_size=None,  # batches are built inside the workers
            num_workers=self.cfg.num_workers,
            persistent_workers=self.cfg.num_workers > 0,
        )
        return EpochLoader(loader, self.shared_epoch, self.batches_per_epoch(world_size), self._resume_position)

    @override
    def val_dataloader(self) -> torch.utils.data.DataLoader | list:
        if not self.cfg.val_shards:
            return []
        urls = [url for source in expand_urls(self.cfg.val_shards) for url in source.urls]
        dataset = ValidationDataset(
            urls,
            self.stats,
            self.cfg.window_frames,
            self.cfg.prev_frames,
            self.micro_batch_size,
            self.cfg.val_windows,
            self.cfg.audio_backend,
        )
        return torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=0)

    @override
    def state_dict(self) -> dict:
        """Where the training stream stands: batches trained on so far, over all epochs."""
        if self.trainer is None:
            return {}
        return {"position": self.trainer.fit_loop.epoch_loop.batch_progress.total.processed}

    @override
    def load_state_dict(self, state_dict: dict) -> None:
        self._resume_position = state_dict.get("position", 0)
