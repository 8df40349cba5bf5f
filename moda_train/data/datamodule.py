"""LightningDataModule over data_prep's shards: fixed-length epochs on every rank, exact fast-forward on resume."""

from __future__ import annotations

import itertools
import multiprocessing
from collections.abc import Callable, Iterator

import lightning as L
import torch
from typing_extensions import override

from moda_train.data.config import DataConfig
from moda_train.data.normalization import MotionStats
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
    """A DataLoader over an endless stream, cut to `batches_per_epoch` batches on every rank.

    Cutting here (not per worker) keeps the count independent of num_workers, so every rank steps the same
    number of times and DDP never waits on a rank that ran dry. After a resume the first epoch skips the batches
    the checkpoint had already consumed; since the stream is a pure function of (seed, epoch, rank, worker), the
    run continues on exactly the batches it would have seen.
    """

    def __init__(
        self,
        loader: torch.utils.data.DataLoader,
        shared_epoch: SharedEpoch,
        batches_per_epoch: int,
        current_epoch: Callable[[], int],
        resume_at: tuple[int, int] | None = None,
    ) -> None:
        self.loader, self.shared_epoch, self.batches_per_epoch = loader, shared_epoch, batches_per_epoch
        self.current_epoch, self.resume_at = current_epoch, resume_at

    def __len__(self) -> int:
        return self.batches_per_epoch

    def __iter__(self) -> Iterator[dict]:
        epoch = self.current_epoch()
        self.shared_epoch.set_value(epoch)
        skip = self.resume_at[1] if self.resume_at and self.resume_at[0] == epoch else 0
        self.resume_at = None
        batches = iter(self.loader)
        # Fast-forward by reading (not training on) the consumed batches: exact, and no slower than loading them.
        return itertools.islice(batches, skip, self.batches_per_epoch)


class MotionDataModule(L.LightningDataModule):
    def __init__(self, cfg: DataConfig, micro_batch_size: int, seed: int = 0) -> None:
        super().__init__()
        self.cfg, self.micro_batch_size, self.seed = cfg, micro_batch_size, seed
        self.stats: MotionStats | None = None
        self.shared_epoch = SharedEpoch()
        self._resume_at: tuple[int, int] | None = None

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
        )
        loader = torch.utils.data.DataLoader(
            dataset,
            batch_size=None,  # batches are built inside the workers
            num_workers=self.cfg.num_workers,
            persistent_workers=self.cfg.num_workers > 0,
        )
        world_size = self.trainer.world_size if self.trainer else 1
        current_epoch = (lambda: self.trainer.current_epoch) if self.trainer else (lambda: 0)
        return EpochLoader(
            loader, self.shared_epoch, self.batches_per_epoch(world_size), current_epoch, self._resume_at
        )

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
        """Where the training stream stands: the epoch and how many of its batches were trained on."""
        if self.trainer is None:
            return {}
        progress = self.trainer.fit_loop.epoch_loop.batch_progress.current
        return {"epoch": self.trainer.current_epoch, "batches": progress.processed}

    @override
    def load_state_dict(self, state_dict: dict) -> None:
        if state_dict:
            self._resume_at = (state_dict["epoch"], state_dict["batches"])
