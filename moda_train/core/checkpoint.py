"""The one reader of this framework's checkpoints (Lightning files: `hyper_parameters.config` + `state_dict`).

Training resumes through Lightning itself; everything else that opens a checkpoint (generation, evaluation, the
ALSE loss, the VAE latent space) comes through `read_checkpoint`, so the errors are the same everywhere: a missing
file, a sharded DeepSpeed folder that must be consolidated first, a checkpoint of another task.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any, Protocol

import torch

# task -> (name, article) for messages
TASK_NAMES = {
    "mmdit": ("MMDiT", "an"),
    "vae": ("motion VAE", "a"),
    "alse": ("ALSE", "an"),
    "emotion": ("emotion classifier", "an"),
}


SHARD_BACKENDS = "shard_backends"
"""Checkpoint entry (and module attribute) of the modules that judge motion (ALSE, the emotion classifier):
{"motion_backend": name, "audio_backend": name}, the extractors that made the shards they were trained on, as the
shards' stats.json records them (`MotionStats`); "" where unrecorded. Older checkpoints have no such entry."""


class CheckpointModule(Protocol):
    def __init__(self, config: dict[str, Any]) -> None: ...


def read_checkpoint(path: str | os.PathLike, task: str, weights_only: bool = False) -> dict[str, Any]:
    """The checkpoint dict of `path`, checked to be a readable single file of experiment task `task`.

    Raises FileNotFoundError for a missing file, ValueError for a sharded DeepSpeed folder (with the consolidate
    command to run), an unreadable file, or a checkpoint of another task.
    """
    path = Path(path)
    name, article = TASK_NAMES[task]
    if path.is_dir():
        raise ValueError(
            f"{name} checkpoint {path} is a sharded DeepSpeed folder, not one file: a sharded DeepSpeed "
            f"checkpoint folder must be consolidated first, with "
            f"`python -m moda_train.consolidate {path} {task}.ckpt`"
        )
    if not path.is_file():
        raise FileNotFoundError(f"{name} checkpoint not found at {path}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=weights_only)
    except (RuntimeError, pickle.UnpicklingError, EOFError) as err:
        raise ValueError(f"{path}: not a readable checkpoint ({err})") from err
    found = checkpoint_config(checkpoint).get("task") if isinstance(checkpoint, dict) else None
    if found != task or "state_dict" not in checkpoint:
        raise ValueError(f"{path} is not {article} {name} checkpoint (task={found!r}, expected {task!r})")
    return checkpoint


def checkpoint_config(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The resolved experiment config stored in a checkpoint (an empty dict if there is none)."""
    return checkpoint.get("hyper_parameters", {}).get("config", {})


def load_module(
    cls: type[CheckpointModule],
    path: str | os.PathLike,
    task: str,
    map_location: Any = "cpu",
    frozen: bool = False,
) -> Any:
    """Rebuild the LightningModule `cls` of a checkpoint from its stored config and weights, in eval mode
    (with `frozen`, its parameters also stop requiring gradients: a fixed judge or expert)."""
    checkpoint = read_checkpoint(path, task)
    module = cls(checkpoint_config(checkpoint))
    module.load_state_dict(checkpoint["state_dict"])
    if hasattr(module, SHARD_BACKENDS):  # a module that records its shards' extractors gets the checkpoint's
        setattr(module, SHARD_BACKENDS, dict(checkpoint.get(SHARD_BACKENDS) or {}))
    if frozen:
        module.requires_grad_(False)
    return module.eval().to(map_location)


def check_motion_backend(recorded: dict[str, str], extractor: str, judge: str) -> str | None:
    """Whether motion from `extractor` may be scored by `judge` (e.g. "the ALSE checkpoint x.ckpt"), whose
    checkpoint recorded `recorded` (its `SHARD_BACKENDS`): None when they match; a warning when the checkpoint
    records no motion backend (it cannot be checked); ValueError naming both when they differ."""
    trained = recorded.get("motion_backend", "")
    if not trained:
        return (
            f"{judge} does not record the motion backend it was trained on (written before it was recorded): "
            f"cannot check that it matches {extractor!r}"
        )
    if trained != extractor:
        raise ValueError(
            f"{judge} was trained on {trained!r} motion, but the motion it would score comes from the "
            f"{extractor!r} extractor: use a checkpoint trained on {extractor!r} shards, or that extractor"
        )
    return None
