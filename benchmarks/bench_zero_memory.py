"""Per-rank optimizer-state memory: DDP (every rank holds all of AdamW's state) vs DeepSpeed ZeRO-2 (each rank
holds 1/N of it), on the reduced MMDiT (configs/model/reduced.yaml), with 2 CPU ranks over gloo.

    python benchmarks/bench_zero_memory.py [--ranks 2] [--model configs/model/reduced.yaml]

Each rank builds the model, runs one forward/backward/step with AdamW (DeepSpeed through the same strategy config
the training run uses, i.e. build_strategy's CPU path), then counts the bytes of the optimizer state it holds:
AdamW's exp_avg and exp_avg_sq, plus, for ZeRO, the fp32 master partition the optimizer steps on (in fp32
training DDP has no separate master copy; under bf16 both would add one, and ZeRO would shard it too).
"""

from __future__ import annotations

import argparse
import os
import socket

import torch
import torch.multiprocessing as mp
from omegaconf import OmegaConf

from moda_train.experiment import TrainConfig
from moda_train.launch.strategies import REPO_ROOT, build_strategy
from moda_train.models.config import ModelConfig
from moda_train.models.moda import MoDA

WINDOW = 16  # frames per sample; memory of optimizer state does not depend on it


def tensor_bytes(obj: object) -> int:
    """Bytes of every tensor reachable through dicts/lists/tuples (each storage counted once)."""
    seen: set[int] = set()

    def walk(item: object) -> int:
        if isinstance(item, torch.Tensor):
            key = item.untyped_storage().data_ptr()
            if key in seen or item.numel() == 0:
                return 0
            seen.add(key)
            return item.untyped_storage().nbytes()
        if isinstance(item, dict):
            return sum(walk(v) for v in item.values())
        if isinstance(item, (list, tuple)):
            return sum(walk(v) for v in item)
        return 0

    return walk(obj)


def make_model(config_path: str) -> MoDA:
    config = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(ModelConfig), OmegaConf.load(config_path)))
    torch.manual_seed(0)
    model = MoDA(config)
    model.initialize_weights()
    return model


def loss_of(model: torch.nn.Module, config: ModelConfig) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, WINDOW, config.motion_dim, generator=gen)
    velocity = model(
        x,
        torch.rand(1, generator=gen),
        torch.randn(1, WINDOW, config.audio_dim, generator=gen),
        torch.randn(1, config.identity_dim, generator=gen),
        torch.zeros(1, dtype=torch.long),
        torch.randn(1, config.prev_motion_frames, config.motion_dim, generator=gen),
    )
    return velocity.square().mean()


def ddp_state_bytes(config_path: str) -> int:
    model = torch.nn.parallel.DistributedDataParallel(make_model(config_path))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    loss_of(model, model.module.config).backward()
    optimizer.step()
    return tensor_bytes(optimizer.state_dict()["state"])


def zero2_state_bytes(config_path: str) -> tuple[int, int]:
    """(AdamW moments, fp32 master partition) held by this rank."""
    import deepspeed

    train = TrainConfig(strategy="deepspeed", deepspeed_config="configs/deepspeed/zero2.json", accelerator="cpu")
    ds_config = dict(build_strategy(train).config, train_micro_batch_size_per_gpu=1, gradient_accumulation_steps=1)
    model = make_model(config_path)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    engine, ds_optimizer, _, _ = deepspeed.initialize(
        model=model, optimizer=optimizer, config=ds_config, dist_init_required=False
    )
    engine.backward(loss_of(engine, model.config))
    engine.step()
    inner = ds_optimizer.optimizer  # the client AdamW, stepping on this rank's fp32 partition only
    master = ds_optimizer.single_partition_of_fp32_groups
    return tensor_bytes(inner.state_dict()["state"]), tensor_bytes(list(master))


def worker(rank: int, world_size: int, port: int, config_path: str, results: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank))
    os.environ["WORLD_SIZE"] = str(world_size)
    torch.set_num_threads(1)
    import deepspeed

    deepspeed.init_distributed(dist_backend="gloo", auto_mpi_discovery=False)
    results[rank] = (ddp_state_bytes(config_path), *zero2_state_bytes(config_path))
    torch.distributed.destroy_process_group()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--model", default=str(REPO_ROOT / "configs" / "model" / "reduced.yaml"))
    args = parser.parse_args()

    params = sum(p.numel() for p in make_model(args.model).parameters())
    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(worker, args=(args.ranks, free_port(), args.model, results), nprocs=args.ranks, join=True)
        results = dict(results)
    mib = 2**20
    print(f"model {args.model}: {params / 1e6:.1f} M parameters (fp32 weights {params * 4 / mib:.1f} MiB)")
    print(f"{'rank':>4}  {'DDP AdamW moments':>17}  {'ZeRO-2 moments':>14}  {'+ fp32 master part':>18}")
    for rank in sorted(results):
        ddp, moments, master = results[rank]
        print(f"{rank:>4}  {ddp / mib:>13.1f} MiB  {moments / mib:>10.1f} MiB  {master / mib:>14.1f} MiB")
    ddp = max(r[0] for r in results.values())
    moments = max(r[1] for r in results.values())
    total = max(r[1] + r[2] for r in results.values())
    ideal = f"ideal 1/{args.ranks} = {1 / args.ranks:.3f}"
    print(f"per-rank ratio ZeRO-2 / DDP, AdamW moments: {moments / ddp:.3f} ({ideal})")
    print(f"per-rank ratio ZeRO-2 / DDP, moments + fp32 master partition: {total / ddp:.3f}")


if __name__ == "__main__":
    main()
