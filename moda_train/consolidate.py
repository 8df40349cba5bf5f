"""Turn a sharded DeepSpeed checkpoint into one fp32 file: `python -m moda_train.consolidate CKPT_DIR OUT.pt`.

With DeepSpeed, a Lightning checkpoint (`last.ckpt`, `step=...ckpt`) is a folder: the module states written by
rank 0 plus one optimizer shard per rank, which hold the fp32 master weights in pieces. This command gathers
the pieces with DeepSpeed's own `zero_to_fp32` (through Lightning's wrapper, which also keeps the Lightning
state: hyper-parameters, the resolved config, loop counters, callbacks' state) and writes a single file that
`torch.load` + `load_state_dict` reads without DeepSpeed, on any number of devices, for inference and evaluation.
The EMA weights come from the fp32 accumulator saved beside the module (`ema_fp32`, see `moda_train/lit/ema.py`),
not from the module's bf16 copy; under ZeRO-3 each rank saved its own partitions, which are joined here.
The conversion runs on CPU, needs no process group, and needs about twice the fp32 model size in memory.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from moda_train.lit.ema import EMA_CHECKPOINT_KEY, merge_zero3_partitions

DEEPSPEED_TAG_FILE = "latest"


def find_deepspeed_tag(checkpoint_dir: Path) -> str:
    """The tag folder inside a DeepSpeed checkpoint folder (Lightning writes `checkpoint`), checked for shards."""
    if not checkpoint_dir.is_dir():
        what = "a file (not a sharded DeepSpeed checkpoint)" if checkpoint_dir.is_file() else "missing"
        raise ValueError(f"{checkpoint_dir}: expected a DeepSpeed checkpoint folder, but it is {what}")
    latest = checkpoint_dir / DEEPSPEED_TAG_FILE
    if latest.is_file():
        tag = latest.read_text().strip()
    else:
        tags = [p.name for p in checkpoint_dir.iterdir() if p.is_dir()]
        if len(tags) != 1:
            raise ValueError(
                f"{checkpoint_dir}: no `{DEEPSPEED_TAG_FILE}` file and {len(tags)} sub-folders; pass --tag"
            )
        tag = tags[0]
    shard_dir = checkpoint_dir / tag
    if not any(shard_dir.glob("*optim_states.pt")):
        raise ValueError(f"{shard_dir}: no `*optim_states.pt` shards; is this a DeepSpeed ZeRO checkpoint?")
    return tag


def full_ema_weights(shard_dir: Path, ema_state: dict) -> dict[str, torch.Tensor]:
    """`ema.<name>` -> full fp32 tensor, from rank 0's saved EMA state (and, under ZeRO-3, every rank's)."""
    if ema_state["layout"] != "zero3":
        return {f"ema.{name}": tensor for name, tensor in ema_state["tensors"].items()}
    states = []
    for rank in range(ema_state["world_size"]):
        path = shard_dir / f"zero_pp_rank_{rank}_mp_rank_00_model_states.pt"
        if not path.is_file():
            world = ema_state["world_size"]
            raise ValueError(f"{shard_dir}: the EMA was partitioned over {world} ranks; {path.name} is missing")
        states.append(torch.load(path, map_location="cpu", weights_only=False)[EMA_CHECKPOINT_KEY]["tensors"])
    return {
        f"ema.{name}": merge_zero3_partitions([state[name] for state in states], shape)
        for name, shape in ema_state["shapes"].items()
    }


def consolidate(checkpoint_dir: str | Path, output_file: str | Path, tag: str | None = None) -> dict:
    """Write the consolidated fp32 checkpoint to `output_file` and return it.

    The result is a Lightning checkpoint dict: `state_dict` (fp32, every parameter and buffer of the
    LightningModule, frozen ones such as EMA weights included) beside the Lightning state of the run.
    """
    from lightning.pytorch.utilities.deepspeed import convert_zero_checkpoint_to_fp32_state_dict

    checkpoint_dir = Path(checkpoint_dir)
    tag = tag or find_deepspeed_tag(checkpoint_dir)
    output_file = Path(output_file)
    output_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = output_file.with_name(output_file.name + ".tmp")
    # Written under a temporary name and renamed, so an interrupted conversion never leaves a truncated file.
    checkpoint = convert_zero_checkpoint_to_fp32_state_dict(checkpoint_dir, tmp, tag=tag)
    ema_state = checkpoint.pop(EMA_CHECKPOINT_KEY, None)
    if ema_state is not None:  # the module's `ema.*` are its bf16 copy: replace them with the fp32 accumulator
        ema = full_ema_weights(checkpoint_dir / tag, ema_state)
        missing = set(ema) - set(checkpoint["state_dict"])
        if missing:
            raise ValueError(f"{checkpoint_dir}: EMA weights without a module entry: {sorted(missing)[:3]}")
        checkpoint["state_dict"].update(ema)
        torch.save(checkpoint, tmp)
    tmp.replace(output_file)
    return checkpoint


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m moda_train.consolidate",
        description="Merge a sharded DeepSpeed checkpoint folder into one fp32 checkpoint file.",
    )
    parser.add_argument(
        "checkpoint_dir", help="DeepSpeed checkpoint folder, e.g. runs/<run>/checkpoints/last.ckpt"
    )
    parser.add_argument("output", help="output file, e.g. runs/<run>/consolidated.pt")
    parser.add_argument("--tag", default=None, help="tag sub-folder to read (default: the one named in `latest`)")
    args = parser.parse_args(argv)
    try:
        checkpoint = consolidate(args.checkpoint_dir, args.output, tag=args.tag)
    except ValueError as err:
        print(f"consolidate: {err}", file=sys.stderr)
        return 2
    state = checkpoint["state_dict"]
    numel = sum(t.numel() for t in state.values() if isinstance(t, torch.Tensor))
    step = checkpoint.get("global_step", "?")
    print(f"wrote {args.output}: {len(state)} tensors, {numel:,} values (fp32), step {step}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
