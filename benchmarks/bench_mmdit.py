"""Benchmark of the MoDA MMDiT on this machine: training-step throughput, model FLOP utilisation, sampling time.

    python benchmarks/bench_mmdit.py                      # reduced config (batch 8) + MoDA-B (batch 1)
    python benchmarks/bench_mmdit.py --only reduced --steps 10 --threads 2

For each configuration it times full training steps (flow loss forward + backward + AdamW step) on random data,
counts the step's floating-point operations with torch's FlopCounterMode (matmuls and attention, forward and
backward, as executed), and divides the achieved FLOP/s by this machine's dense fp32 matmul throughput measured
in the same run (2048^2 matmuls right before and after each timed step, the faster of the two) to give the model
FLOP utilisation (MFU); the median over steps is reported, and the best step as an upper view on a busy machine.
It also times 10-step guided Euler sampling of one 80-frame window (separate audio and emotion scales: three
passes batched per step).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from moda_train.core.config_loader import CONFIGS_ROOT, load_config
from moda_train.core.motion_layout import group_indices
from moda_train.flow import FlowConfig, flow_loss, sample
from moda_train.models import MoDA, ModelConfig

SETUPS = {"reduced": ("reduced.yaml", 8), "moda_b": ("moda_b.yaml", 1)}


def model_config(preset: str) -> ModelConfig:
    """A model preset from configs/model, read through the same typed loader the training job uses."""
    typed, _ = load_config(CONFIGS_ROOT / "model" / preset, schema=ModelConfig)
    return typed


def matmul_gflops(size: int = 2048, repeats: int = 5, rounds: int = 3) -> tuple[float, float]:
    """Dense fp32 matmul throughput in GFLOP/s, by wall clock and by this thread's CPU time (best round each)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b  # warm-up: thread pool, allocator
    best_wall = best_cpu = float("inf")
    for _ in range(rounds):
        wall, cpu = time.perf_counter(), time.thread_time()
        for _ in range(repeats):
            a @ b
        best_wall, best_cpu = min(best_wall, time.perf_counter() - wall), min(best_cpu, time.thread_time() - cpu)
    flop = 2 * size**3 * repeats / 1e9
    return flop / best_wall, flop / best_cpu


def random_batch(cfg: ModelConfig, batch: int, frames: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(batch, frames, cfg.motion_dim, generator=g)
    cond = {
        "audio": torch.randn(batch, frames, cfg.audio_dim, generator=g),
        "identity": torch.randn(batch, cfg.identity_dim, generator=g),
        "emotion": torch.randint(0, cfg.num_emotions + 1, (batch,), generator=g),
        "prev_motion": torch.randn(batch, cfg.prev_motion_frames, cfg.motion_dim, generator=g),
    }
    return x0, cond


def time_calls(fn: Callable[[], object], warmup: int, repeats: int) -> list[float]:
    """Wall times of `repeats` calls after `warmup` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def bench_setup(name: str, steps: int, frames: int, sample_steps: int) -> dict:
    preset, batch = SETUPS[name]
    cfg = model_config(preset)
    torch.manual_seed(0)
    model = MoDA(cfg)
    # Train from a state where every branch is live (adaLN-Zero makes the first steps unrepresentative).
    with torch.no_grad():
        for p in model.parameters():
            if not p.any():
                p.normal_(std=0.02)
    flow = FlowConfig()
    groups = group_indices() if cfg.motion_dim == 70 else None
    # fused=True: one kernel for all parameters, about 3x faster than the default foreach AdamW on CPU.
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    x0, cond = random_batch(cfg, batch, frames)
    generator = torch.Generator().manual_seed(0)

    def train_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        flow_loss(model, x0, cond, flow, groups, generator)["loss"].backward()
        optimizer.step()

    with FlopCounterMode(display=False) as counter:
        flow_loss(model, x0, cond, flow, groups, generator)["loss"].backward()
    step_flops = counter.get_total_flops()
    optimizer.zero_grad(set_to_none=True)

    # Other jobs on the cores change the available throughput from second to second, so every timed step is
    # bracketed by short matmul probes and its MFU is taken against the faster probe of the two. With one torch
    # thread all work runs on the calling thread, so its CPU time also gives a contention-free MFU: the step's
    # FLOP per CPU-second over the matmul's FLOP per CPU-second (it ignores only time spent descheduled).
    for _ in range(2):
        train_step()  # warm-up
    step_times, mfus, cpu_mfus, probes = [], [], [], []
    probe = matmul_gflops(repeats=2, rounds=2)
    for _ in range(steps):
        wall, cpu = time.perf_counter(), time.thread_time()
        train_step()
        step_times.append(time.perf_counter() - wall)
        step_cpu = time.thread_time() - cpu
        after = matmul_gflops(repeats=2, rounds=2)
        best = (max(probe[0], after[0]), max(probe[1], after[1]))
        probes.append(best[0])
        mfus.append(step_flops / step_times[-1] / 1e9 / best[0])
        cpu_mfus.append(step_flops / step_cpu / 1e9 / best[1])
        probe = after
    step = statistics.median(step_times)

    model.eval()
    one = {key: value[:1] for key, value in cond.items()}

    def guided_sampling() -> None:
        sample(model, one, frames, steps=sample_steps, guidance_audio=1.15, guidance_emotion=1.15)

    sampling = statistics.median(time_calls(guided_sampling, warmup=1, repeats=3))
    return {
        "config": name,
        "parameters": sum(p.numel() for p in model.parameters()),
        "batch": batch,
        "frames": frames,
        "threads": torch.get_num_threads(),
        "step_s_median": step,
        "step_s_min": min(step_times),
        "windows_per_s": batch / step,
        "step_gflop": step_flops / 1e9,
        "achieved_gflops": step_flops / step / 1e9,
        "matmul_gflops": statistics.median(probes),
        "mfu": statistics.median(mfus),
        "mfu_best_step": max(mfus),
        "mfu_cpu_time": statistics.median(cpu_mfus) if torch.get_num_threads() == 1 else None,
        f"sampling_{sample_steps}_steps_s": sampling,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=sorted(SETUPS), action="append", help="run only this setup (repeatable)")
    parser.add_argument("--steps", type=int, default=8, help="timed training steps per setup (after 2 warm-up)")
    parser.add_argument("--frames", type=int, default=80, help="frames per window")
    parser.add_argument("--sample-steps", type=int, default=10, help="Euler steps of the timed sampling")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    results = [bench_setup(name, args.steps, args.frames, args.sample_steps) for name in args.only or SETUPS]
    for r in results:
        print(
            f"{r['config']:>8}: {r['parameters'] / 1e6:6.1f} M params, batch {r['batch']} x {r['frames']} frames, "
            f"{r['threads']} threads | step {r['step_s_median']:.3f} s (min {r['step_s_min']:.3f}) = "
            f"{r['windows_per_s']:.2f} windows/s | {r['step_gflop']:.1f} GFLOP/step -> {r['achieved_gflops']:.1f} "
            f"GFLOP/s of {r['matmul_gflops']:.1f} GFLOP/s matmul = MFU {100 * r['mfu']:.1f} % "
            f"(best step {100 * r['mfu_best_step']:.1f} %"
            + (f", by CPU time {100 * r['mfu_cpu_time']:.1f} %" if r["mfu_cpu_time"] is not None else "")
            + ") | guided sampling "
            f"{args.sample_steps} steps: {r[f'sampling_{args.sample_steps}_steps_s']:.2f} s"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
