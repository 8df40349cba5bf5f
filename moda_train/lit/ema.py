"""Exponential moving average of model weights, DiT style, accumulated in fp32 under every strategy.

The EMA *module* (`make_ema`) is a frozen deep copy of the model in eval mode, synced with decay 0 at the start. It
is a submodule of the LightningModule: its weights are saved under `ema.*`, and validation, sampling, generation
and evaluation run it. The EMA *accumulator* (`EMAShadow`) holds the running average in fp32 tensors that are not
part of the module tree, so no strategy's cast reaches them; it is updated after every optimizer step and copied
into the EMA module when validation starts, when training ends and when a checkpoint is written.

Why the accumulator lives outside the module: DeepSpeed casts every parameter of the LightningModule, the EMA copy
included, to the training precision. bf16 keeps 8 significant bits, so `ema += (1 - 0.9999) * (w - ema)` rounds
to no change at all; an EMA stored in bf16 does not move.

What happens per strategy (the `layout` recorded in the saved state):

- Single device and DDP, any precision (the module stays fp32; bf16-mixed is autocast): `alias`. The accumulator
  is the EMA module's own fp32 parameters, updated from the fp32 weights, saved as `ema.*` in the state dict.
- DeepSpeed ZeRO-0/1/2: `full`. Every rank keeps a full fp32 accumulator (identical on all ranks), updated from
  the weights the forward pass uses: under bf16-mixed that is the bf16 copy of the fp32 master, so each term of
  the average is off by at most one bf16 rounding (2**-9 relative) while the sum itself is exact fp32. Saved as
  `ema_fp32` in the checkpoint dict (rank 0's `mp_rank_00_model_states.pt`).
- DeepSpeed ZeRO-3: `zero3`. Each rank keeps the fp32 EMA of its own partition of every parameter, updated from
  that rank's fp32 master partition (exact). Saved as `ema_fp32` in each rank's own
  `zero_pp_rank_<r>_mp_rank_00_model_states.pt`.

Under ZeRO-3 the partition of a parameter with n elements on N ranks is elements [r*ceil(n/N), (r+1)*ceil(n/N))
of the flattened tensor (zero-padded), DeepSpeed's own layout; `moda_train.consolidate` concatenates the ranks'
partitions into full fp32 tensors and writes them as `ema.*`. No communication happens per step under any strategy
(ZeRO-3 needs one all-gather of the small persistent parameters when the EMA module is refreshed).

Resume restores the accumulator exactly (fp32, bit for bit) from the checkpoint; a DeepSpeed checkpoint resumes
only on the number of ranks that wrote it (see `moda_train/launch/resume.py`).
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from lightning.pytorch.utilities.rank_zero import rank_zero_info
from torch import nn

EMA_CHECKPOINT_KEY = "ema_fp32"
"""Checkpoint entry holding `EMAShadow.state_dict()` where the module's own `ema.*` weights are not the fp32 truth
(DeepSpeed); `moda_train.consolidate` turns it into `ema.*` entries."""


def make_ema(model: nn.Module) -> nn.Module:
    ema = copy.deepcopy(model).eval()
    ema.requires_grad_(False)
    return ema


def _is_zero3(param: torch.Tensor) -> bool:
    return hasattr(param, "ds_id")


def zero3_partition(tensor: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """Rank `rank`'s partition of `tensor` in DeepSpeed ZeRO-3's layout: flattened, zero-padded, equal slices."""
    size = math.ceil(tensor.numel() / world_size)
    flat = torch.zeros(size * world_size, dtype=tensor.dtype, device=tensor.device)
    flat[: tensor.numel()] = tensor.reshape(-1)
    return flat[rank * size : (rank + 1) * size].clone()


def merge_zero3_partitions(partitions: list[torch.Tensor], shape: list[int]) -> torch.Tensor:
    """Inverse of `zero3_partition` over all ranks' partitions, in rank order."""
    numel = math.prod(shape)
    return torch.cat([p.reshape(-1) for p in partitions])[:numel].reshape(shape)


class EMAShadow:
    """The fp32 running average of `model`'s parameters behind the EMA module `ema` (see the table above).

    Lifecycle, driven by `EMATrainedModule`: `snapshot()` before the strategy casts or partitions anything
    (Lightning's `setup` hook), `attach()` once the model sits on its device in its training form
    (`on_fit_start`), `load_state_dict()` when resuming (before `attach()` under DDP, after it under DeepSpeed),
    `update()` after each optimizer step, `copy_to_module()` before the EMA module is used.
    """

    def __init__(self, ema: nn.Module, decay: float) -> None:
        self.ema, self.decay = ema, decay
        self.layout = ""  # set by attach(): alias, full or zero3
        self.tensors: dict[str, torch.Tensor] = {}
        self._snapshot: dict[str, torch.Tensor] = {}  # fp32 values captured before a cast (fresh start)
        self._loaded: dict[str, torch.Tensor] = {}  # fp32 values from a checkpoint, before attach()
        self.rank, self.world_size = 0, 1

    @torch.no_grad()
    def snapshot(self) -> None:
        """Keep an fp32 CPU copy of the EMA weights as they are now (before a cast to bf16 can round them)."""
        self._snapshot = {
            name: p.detach().float().cpu().clone()
            for name, p in self.ema.named_parameters()
            if not (_is_zero3(p) and p.numel() == 0)
        }

    @torch.no_grad()
    def attach(self, model: nn.Module, rank: int, world_size: int) -> None:
        """Choose the layout from the parameters as the strategy left them, and place the fp32 accumulator."""
        self.rank, self.world_size = rank, world_size
        ema_params = dict(self.ema.named_parameters())
        first = next(iter(ema_params.values()))
        if _is_zero3(first):
            self.layout = "zero3"
            partitioned = sum(p.numel() == 0 for p in ema_params.values())
            rank_zero_info(
                f"EMA: ZeRO-3, {partitioned} of {len(ema_params)} parameters partitioned; each rank keeps the "
                "fp32 EMA of its partition"
            )
            for name, ema_param in ema_params.items():
                pending = self._loaded.get(name, self._snapshot.get(name))
                if pending is None:
                    raise RuntimeError(f"EMA: no fp32 value of {name} was captured before ZeRO-3 partitioned it")
                if pending.shape != ema_param.ds_tensor.shape:  # a full tensor (fresh start): take our slice
                    pending = zero3_partition(pending, rank, world_size)
                self.tensors[name] = pending.to(ema_param.ds_tensor.device)
        elif first.dtype == torch.float32:
            self.layout = "alias"  # the module itself is fp32 and whole: no second copy
            for name, ema_param in ema_params.items():
                if name in self._loaded:  # a checkpoint of a bf16 DeepSpeed run continued in fp32
                    ema_param.copy_(self._loaded[name])
                self.tensors[name] = ema_param.data  # otherwise restored with the state dict
        else:
            self.layout = "full"
            for name, ema_param in ema_params.items():
                pending = self._loaded.get(name, self._snapshot.get(name))
                if pending is None:
                    raise RuntimeError(f"EMA: no fp32 value of {name} was captured before the module was cast")
                self.tensors[name] = pending.to(ema_param.device)
        self._snapshot, self._loaded = {}, {}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """ema = decay * ema + (1 - decay) * weights, in fp32, parameter by parameter (buffers are copied)."""
        weight = 1.0 - self.decay
        for (name, ema_param), param in zip(self.ema.named_parameters(), model.parameters(), strict=True):
            if self.layout == "zero3":
                from deepspeed.utils import safe_get_local_fp32_param

                live = safe_get_local_fp32_param(param)
                shadow = self.tensors[name]
                n = min(live.numel(), shadow.numel())
                shadow[:n].lerp_(live.reshape(-1)[:n].to(shadow.device), weight)
            else:
                self.tensors[name].lerp_(param.detach().float(), weight)
        for ema_buffer, buffer in zip(self.ema.buffers(), model.buffers(), strict=True):
            ema_buffer.copy_(buffer)

    @torch.no_grad()
    def copy_to_module(self) -> None:
        """Write the fp32 average into the EMA module's parameters (rounded to their dtype). A collective under
        ZeRO-3 (every rank must call it)."""
        if self.layout in ("", "alias"):
            return
        for name, ema_param in self.ema.named_parameters():
            shadow = self.tensors[name]
            if self.layout == "full":
                ema_param.copy_(shadow)
                continue
            ema_param.ds_tensor.copy_(shadow[: ema_param.ds_tensor.numel()])
            if ema_param.data.numel() == ema_param.ds_numel:  # gathered and kept (persistent): refresh it too
                parts = [torch.empty_like(shadow) for _ in range(self.world_size)]
                torch.distributed.all_gather(parts, shadow)
                ema_param.data.copy_(merge_zero3_partitions(parts, list(ema_param.ds_shape)))

    def state_dict(self) -> dict[str, Any]:
        """The fp32 accumulator for a checkpoint (under ZeRO-3, this rank's partitions only)."""
        shapes = {
            name: list(p.ds_shape) if _is_zero3(p) else list(p.shape) for name, p in self.ema.named_parameters()
        }
        return {
            "layout": self.layout,
            "rank": self.rank,
            "world_size": self.world_size,
            "decay": self.decay,
            "shapes": shapes,
            "tensors": {name: t.detach().cpu().clone() for name, t in self.tensors.items()},
        }

    def load_state_dict(self, state: dict[str, Any], rank: int, world_size: int) -> None:
        """Take a saved accumulator for `attach()` to place. A ZeRO-3 one must be this rank's own partitions."""
        if state["layout"] == "zero3" and (state["rank"], state["world_size"]) != (rank, world_size):
            raise ValueError(
                f"EMA partitions of rank {state['rank']} of {state['world_size']} loaded on rank {rank} of "
                f"{world_size}: a ZeRO-3 checkpoint resumes only on the number of ranks that wrote it"
            )
        self._loaded = dict(state["tensors"])
        if self.layout:  # DeepSpeed restores after on_fit_start, so attach() has run: place the values now
            for name, tensor in self._loaded.items():
                self.tensors[name].copy_(tensor)
            self._loaded = {}
