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
    if frozen:
        module.requires_grad_(False)
    return module.eval().to(map_location)
