"""What the modules that judge motion (ALSE, the emotion classifier) record about their training shards.

They score motion that evaluation re-extracts from videos, which means something only when the extractor is the
one that made their training shards. `ShardBackendsRecord` keeps the shards' motion and audio backends (from
their stats.json, the data contract's `MotionStats`, else the config's `data.*_backend`) in the module and in
every checkpoint it writes (`moda_train.core.checkpoint.SHARD_BACKENDS`); `load_module` and Lightning's resume
read them back.
"""

from __future__ import annotations

from typing_extensions import override

from moda_train.core.checkpoint import SHARD_BACKENDS
from moda_train.core.stats import MotionStats
from moda_train.data.config import DataConfig


class ShardBackendsRecord:
    """Mixin for a LightningModule (listed before it); call `record_shard_backends` in `__init__`."""

    shard_backends: dict[str, str]

    def record_shard_backends(self, stats: MotionStats | None, data: DataConfig) -> None:
        """Keep the backends `stats` records (None, e.g. a module rebuilt from its checkpoint's config: none),
        each falling back to the config's `data.motion_backend` / `data.audio_backend`."""
        motion, audio = (stats.motion_backend, stats.audio_backend) if stats is not None else ("", "")
        self.shard_backends = {
            "motion_backend": motion or data.motion_backend,
            "audio_backend": audio or data.audio_backend,
        }

    @override
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint[SHARD_BACKENDS] = dict(self.shard_backends)

    @override
    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.shard_backends = dict(checkpoint.get(SHARD_BACKENDS) or {})
