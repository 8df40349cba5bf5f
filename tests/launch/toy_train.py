"""A small training job on the real launch stack, run by the tests in its own process (never inside pytest).

It uses exactly what `moda_train.train` uses for distribution (build_strategy, build_plugins, trainer_devices,
PreemptionCallback, ModelCheckpoint) around a toy model, so that failures are about launching, sharding,
checkpointing and resuming, not about the MoDA model. Determinism, as the real module should provide it:
- data: batch i of rank r is a pure function of (seed, r, i), and the stream starts at the batch the restored
  step counter says (global_step x accumulation), so a resumed run reads what the uninterrupted run read;
- randomness inside the step (here: input noise) comes from a generator seeded by (seed, step, rank), so it
  needs no RNG state in the checkpoint;
- EMA weights are a frozen submodule, saved and restored with the model.

    python tests/launch/toy_train.py OUT_DIR --strategy deepspeed --devices 2 --max-steps 20
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn
from torch.utils.data import DataLoader, IterableDataset

from moda_train.experiment import TrainConfig
from moda_train.launch.environment import build_plugins, trainer_devices, world_info_from_env
from moda_train.launch.preemption import PreemptionCallback
from moda_train.launch.strategies import build_strategy

FEATURES = 32
HIDDEN = 64


class StepStream(IterableDataset):
    """Endless batches; batch i of rank r depends only on (seed, r, i). Starts at batch `start`."""

    def __init__(self, seed: int, rank: int, batch_size: int, start: int) -> None:
        self.seed, self.rank, self.batch_size, self.start = seed, rank, batch_size, start

    def __iter__(self):
        target = torch.Generator().manual_seed(self.seed)
        weights = torch.randn(FEATURES, 1, generator=target)
        index = self.start
        while True:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.rank * 10_007 + index)
            x = torch.randn(self.batch_size, FEATURES, generator=gen)
            yield {"x": x, "y": torch.sin(x @ weights), "index": torch.tensor(index)}
            index += 1


class ToyModule(pl.LightningModule):
    def __init__(self, seed: int, lr: float, batch_size: int, step_sleep: float, ema_decay: float = 0.9) -> None:
        super().__init__()
        self.save_hyperparameters()
        torch.manual_seed(seed)
        self.net = nn.Sequential(nn.Linear(FEATURES, HIDDEN), nn.GELU(), nn.Linear(HIDDEN, HIDDEN), nn.GELU())
        self.head = nn.Linear(HIDDEN, 1)
        self.ema = copy.deepcopy(nn.ModuleDict({"net": self.net, "head": self.head})).requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.net(x))

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        noise_gen = torch.Generator().manual_seed(
            self.hparams.seed + 7919 * self.global_step + 104729 * self.global_rank
        )
        x = batch["x"] + 0.01 * torch.randn(batch["x"].shape, generator=noise_gen)
        loss = nn.functional.mse_loss(self(x), batch["y"])
        self.log("loss", loss, prog_bar=False)
        if self.hparams.step_sleep:
            time.sleep(self.hparams.step_sleep)  # lets tests signal or kill a rank mid-run
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        with torch.no_grad():
            live = dict(self.net.named_parameters(prefix="net")) | dict(self.head.named_parameters(prefix="head"))
            for name, ema_param in self.ema.named_parameters():
                ema_param.lerp_(live[name], 1 - self.hparams.ema_decay)
        progress = Path(self.trainer.default_root_dir) / f"progress_rank{self.global_rank}.jsonl"
        with progress.open("a") as f:
            f.write(
                json.dumps(
                    {
                        "t": round(time.time(), 2),
                        "step": self.global_step,
                        "index": int(batch["index"]),
                        "pid": os.getpid(),
                    }
                )
                + "\n"
            )

    def configure_optimizers(self):
        # Client optimizer: DeepSpeed partitions its state (ZeRO-1/2) and runs its step; the schedule is Lightning's.
        optimizer = torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=0.01)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / 5) * 0.97**step)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def train_dataloader(self) -> DataLoader:
        start = self.trainer.global_step * self.trainer.accumulate_grad_batches
        stream = StepStream(self.hparams.seed, self.global_rank, self.hparams.batch_size, start)
        return DataLoader(stream, batch_size=None, num_workers=0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--strategy", default="deepspeed")
    parser.add_argument("--deepspeed-config", default="configs/deepspeed/zero2.json")
    parser.add_argument("--devices", type=int, default=2)
    parser.add_argument("--max-steps", type=int, default=12)
    parser.add_argument("--accumulate", type=int, default=1)
    parser.add_argument("--ckpt-every", type=int, default=4)
    parser.add_argument("--step-sleep", type=float, default=0.0)
    parser.add_argument("--timeout-s", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)

    train = TrainConfig(
        accelerator="cpu",
        devices=args.devices,
        precision="32-true",
        strategy=args.strategy,
        deepspeed_config=args.deepspeed_config,
        max_steps=args.max_steps,
        global_batch_size=8,
        micro_batch_size=8,
    )
    torch.use_deterministic_algorithms(True)
    from datetime import timedelta

    devices, num_nodes = trainer_devices(train)
    ckpt_dir = args.out_dir / "checkpoints"
    checkpoint = ModelCheckpoint(
        dirpath=ckpt_dir, filename="{step}", every_n_train_steps=args.ckpt_every, save_top_k=-1, save_last=True
    )
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=devices,
        num_nodes=num_nodes,
        strategy=build_strategy(train, timeout=timedelta(seconds=args.timeout_s)),
        plugins=build_plugins(train),
        precision="32-true",
        max_steps=args.max_steps,
        accumulate_grad_batches=args.accumulate,
        gradient_clip_val=1.0,
        callbacks=[checkpoint, PreemptionCallback()],
        default_root_dir=args.out_dir,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        deterministic=True,
    )
    module = ToyModule(seed=args.seed, lr=3e-3, batch_size=train.micro_batch_size, step_sleep=args.step_sleep)
    last = ckpt_dir / "last.ckpt"
    trainer.fit(module, ckpt_path=str(last) if last.exists() else None)
    info = world_info_from_env()
    summary = {"global_step": trainer.global_step, "world_size": trainer.world_size, "launcher": info.launcher}
    if trainer.is_global_zero:
        (args.out_dir / "done.json").write_text(json.dumps(summary))


if __name__ == "__main__":
    main()
