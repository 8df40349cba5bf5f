"""Fine-tuning start (`train.init_from=`): a module's weights and EMA from a checkpoint, everything else fresh.

Unlike `train.resume`, nothing of the earlier run's progress is taken: optimizer moments, LR schedule (warm-up
again) and step counter start from zero, and the run gets its own folder. The file can be any checkpoint of this
framework of the same task and architecture, including one written by `python -m moda_train.import_official`.
When the run folder already holds a `last` checkpoint (a requeued fine-tune), `train.resume: auto` restores that
one over these weights, so the fine-tune continues instead of starting again.
"""

from __future__ import annotations

import lightning as L
import torch

from moda_train.core.checkpoint import checkpoint_config, read_checkpoint

STATS_BUFFERS = ("motion_mean", "motion_std")


def load_initial_weights(module: L.LightningModule, path: str, task: str) -> None:
    """Copy every tensor of `module`'s state dict (weights, EMA, the frozen latent space, statistics) from the
    checkpoint at `path`. Tensors the file has beyond those (e.g. an ALSE expert, rebuilt from `sync.checkpoint`)
    are ignored. Raises ValueError, naming the tensors, when the file lacks some or their shapes differ, and when
    its motion statistics are not the ones this run normalises its data with, or its motion convention (crop and
    expression, `data.motion_convention`) is not this run's."""
    checkpoint = read_checkpoint(path, task)
    state = checkpoint["state_dict"]
    theirs = checkpoint_config(checkpoint).get("data", {}).get("motion_convention", "")
    mine = module.hparams.get("config", {}).get("data", {}).get("motion_convention", "")
    if theirs and mine and theirs != mine:
        raise ValueError(
            f"train.init_from={path}: trained on motion of the {theirs!r} convention, but this run's shards are "
            f"{mine!r}: make the shards with the same motion backend options"
        )
    ours = module.state_dict()
    missing = sorted(set(ours) - set(state))
    misshapen = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in ours.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or misshapen:
        shown = [f"missing {', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}"] if missing else []
        shown += [f"shapes differ: {', '.join(misshapen[:8])}"] if misshapen else []
        raise ValueError(
            f"train.init_from={path}: not the architecture of this experiment ({'; '.join(shown)}): give the "
            "model config the checkpoint was trained with"
        )
    for key in STATS_BUFFERS:
        if key in ours and not torch.allclose(state[key].to(ours[key]), ours[key], rtol=1e-5, atol=1e-7):
            raise ValueError(
                f"train.init_from={path}: its motion statistics differ from data.stats_path's; the weights only "
                "make sense on motion normalised as they were trained: point data.stats_path at that checkpoint's "
                "statistics (for an imported one, the .stats.json written beside it)"
            )
    module.load_state_dict({key: state[key] for key in ours})
