"""The check before a run resumes: a DeepSpeed checkpoint continues only on the number of ranks that wrote it.

A DeepSpeed checkpoint holds one optimizer shard (and, under ZeRO-3, one EMA partition) per rank, so it resumes
only on the same number of ranks. On another number the run stops before any work, naming both numbers and the
way on: consolidate the checkpoint to one fp32 file and start a new run from its weights with `train.init_from`
(`moda_train.lit.init_from`).
"""

from __future__ import annotations

from pathlib import Path

from moda_train.consolidate import find_deepspeed_tag


class ResumeError(ValueError):
    """A checkpoint this job cannot continue from; the message says what to do instead."""


def checkpoint_world_size(checkpoint: str | Path) -> int | None:
    """Ranks that wrote a DeepSpeed checkpoint folder (one `*optim_states.pt` per rank); None for a single file
    (DDP, one device), which holds whole optimizer state and resumes on any number of ranks."""
    checkpoint = Path(checkpoint)
    if not checkpoint.is_dir():
        return None
    return len(list((checkpoint / find_deepspeed_tag(checkpoint)).glob("*optim_states.pt")))


def check_resume_world_size(checkpoint: str | Path | None, world_size: int) -> None:
    """Raise a `ResumeError` with the recipe if a DeepSpeed checkpoint would resume on another number of ranks."""
    if checkpoint is None:
        return
    saved = checkpoint_world_size(checkpoint)
    if saved is None or saved == world_size:
        return
    raise ResumeError(
        f"{checkpoint} was written by {saved} ranks but this job has {world_size}: a DeepSpeed checkpoint "
        f"(per-rank optimizer and EMA shards) resumes only on {saved} ranks. Run on {saved} ranks, or continue "
        f"from its weights with a fresh optimizer: `python -m moda_train.consolidate {checkpoint} model_fp32.pt`, "
        f"then train with `train.init_from=model_fp32.pt` and a new `train.run_name` (see docs/cluster.md)"
    )
