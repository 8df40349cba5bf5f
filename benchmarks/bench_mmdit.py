"""Benchmark of the MoDA MMDiT on this machine: eager vs compiled training steps and sampling, side by side.

    python benchmarks/bench_mmdit.py                      # reduced config (batch 8) + MoDA-B (batch 1)
    python benchmarks/bench_mmdit.py --only reduced --steps 4 --json bench.json

For each configuration, in one process and with repetitions interleaved (the machine is shared, so only ratios
measured side by side are trustworthy), it times full training steps (flow loss forward + backward + AdamW step)
on random data for:
  eager       the model as is, stepped by the AdamW that training uses (`moda_train.lit.optim.make_adamw`),
  compiled    the same weights with `MoDA.compile_blocks()` (what `model.compile=true` does), same optimizer,
  for-loop    the eager model, stepped by torch's default AdamW on CPU (the per-parameter for-loop implementation).
It counts the step's floating-point operations with torch's FlopCounterMode (matmuls and attention, forward and
backward), and divides the achieved FLOP/s by this machine's dense fp32 matmul throughput measured around every
timed step (2048^2 matmuls right before and after it, the faster of the two) to give the model FLOP
utilisation (MFU). It times 10-step guided Euler sampling of one 80-frame window with equal audio and emotion
scales (two passes a step) and with separate ones (three), eager and compiled, with the FLOPs of each. Last, a
torch.profiler table of one training step, eager and compiled: where the time that is not matmul goes.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from collections.abc import Callable

import torch
import torch._inductor.config as inductor_config
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

from moda_train.core.config_loader import CONFIGS_ROOT, load_config
from moda_train.core.motion_layout import group_indices
from moda_train.flow import FlowConfig, flow_loss, sample
from moda_train.lit.optim import make_adamw
from moda_train.models import MoDA, ModelConfig

# The tiny preset is not part of the default run: it checks the script itself in a few minutes.
SETUPS = {"reduced": ("reduced.yaml", 8), "moda_b": ("moda_b.yaml", 1), "tiny": ("tiny.yaml", 8)}
DEFAULT_SETUPS = ("reduced", "moda_b")
SCALES = {"equal": (1.15, 1.15), "separate": (1.15, 1.5)}
# Profiler rows that are dense matmul work (the FLOPs the MFU counts, attention apart).
MATMUL_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "mkldnn::_linear_pointwise")
PROFILE_ROWS = 12


def model_config(preset: str) -> ModelConfig:
    """A model preset from configs/model, read through the same typed loader the training job uses."""
    typed, _ = load_config(CONFIGS_ROOT / "model" / preset, schema=ModelConfig)
    return typed


def flop_counter() -> FlopCounterMode:
    """torch's FLOP counter, also counting the CPU flash-attention kernels (torch registers formulas only for the
    CUDA attention kernels, so on CPU attention would count as zero)."""
    aten = torch.ops.aten
    cpu_attention = {  # argument shapes in, as torch's own formulas for the CUDA kernels take them
        aten._scaled_dot_product_flash_attention_for_cpu: lambda q, k, v, *_, **__: sdpa_flop_count(q, k, v),
        aten._scaled_dot_product_flash_attention_for_cpu_backward: (
            lambda grad, q, k, v, *_, **__: sdpa_backward_flop_count(grad, q, k, v)
        ),
    }
    return FlopCounterMode(display=False, custom_mapping=cpu_attention)


def matmul_gflops(size: int = 2048, repeats: int = 2, rounds: int = 2) -> float:
    """Dense fp32 matmul throughput in GFLOP/s by wall clock (best round)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b  # warm-up: thread pool, allocator
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 * repeats / 1e9 / best


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


def interleaved(fns: dict[str, Callable[[], object]], repeats: int) -> tuple[dict[str, list[float]], dict]:
    """Wall times of `repeats` rounds of every fn in turn, and per call the faster matmul probe around it."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    probes: dict[str, list[float]] = {name: [] for name in fns}
    probe = matmul_gflops()
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
            after = matmul_gflops()
            probes[name].append(max(probe, after))
            probe = after
    return times, probes


def profile_table(fn: Callable[[], object]) -> tuple[float, list[tuple[str, float]]]:
    """(total ms, [(op, self ms)]) of one call of fn: the matmul share and the largest other ops by self time."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events) / 1e3
    matmul = sum(e.self_cpu_time_total for e in events if e.key in MATMUL_OPS) / 1e3
    others = sorted(
        ((e.key, e.self_cpu_time_total / 1e3) for e in events if e.key not in MATMUL_OPS), key=lambda r: -r[1]
    )
    return total, [("matmul (mm, addmm, bmm)", matmul), *others[:PROFILE_ROWS]]


def bench_setup(name: str, steps: int, frames: int, sample_steps: int, sample_repeats: int) -> dict:
    preset, batch = SETUPS[name]
    cfg = model_config(preset)
    torch.manual_seed(0)
    eager = MoDA(cfg)
    # Train from a state where every branch is live (adaLN-Zero makes the first steps unrepresentative).
    with torch.no_grad():
        for p in eager.parameters():
            if not p.any():
                p.normal_(std=0.02)
    compiled = copy.deepcopy(eager)
    compiled.compile_blocks()
    # The for-loop variant steps the eager model's own weights with a second optimizer: timing does not depend on
    # the values, and a third copy of MoDA-B's weights and gradients would not fit beside the others in 24 GB.
    looped = eager
    flow = FlowConfig()
    groups = group_indices() if cfg.motion_dim == 70 else None
    x0, cond = random_batch(cfg, batch, frames)
    optimizers = {
        "eager": (eager, make_adamw(eager.parameters(), lr=1e-4)),
        "compiled": (compiled, make_adamw(compiled.parameters(), lr=1e-4)),
        # torch's default on CPU: foreach=None resolves to the per-parameter loop there
        "for-loop": (looped, (torch.optim.AdamW(looped.parameters(), lr=1e-4), "for-loop")),
    }

    def train_step(model: MoDA, optimizer: torch.optim.Optimizer) -> Callable[[], None]:
        def step() -> None:
            optimizer.zero_grad(set_to_none=True)
            generator = torch.Generator().manual_seed(0)
            flow_loss(model, x0, cond, flow, groups, generator)["loss"].backward()
            optimizer.step()

        return step

    steps_fns = {key: train_step(model, opt) for key, (model, (opt, _)) in optimizers.items()}
    with flop_counter() as counter:
        flow_loss(eager, x0, cond, flow, groups, torch.Generator().manual_seed(0))["loss"].backward()
    step_flops = counter.get_total_flops()

    start = time.perf_counter()
    steps_fns["compiled"]()  # compiles the block graphs (forward and backward)
    compile_s = time.perf_counter() - start
    for fn in steps_fns.values():
        fn()  # warm-up
    times, probes = interleaved(steps_fns, steps)
    training = {}
    for key, (_, (_, implementation)) in optimizers.items():
        mfus = [step_flops / t / 1e9 / p for t, p in zip(times[key], probes[key])]
        training[key] = {
            "optimizer": implementation,
            "step_s_median": statistics.median(times[key]),
            "step_s_min": min(times[key]),
            "mfu_median": statistics.median(mfus),
            "mfu_best": max(mfus),
        }
    # The optimizer step alone, training's vs the for-loop (gradients are still there from the last step).
    opt_times, _ = interleaved({key: optimizers[key][1][0].step for key in ("eager", "for-loop")}, steps)
    for key, values in opt_times.items():
        training[key]["optimizer_step_s"] = statistics.median(values)

    profiles = {key: profile_table(steps_fns[key]) for key in ("eager", "compiled")}

    one = {key: value[:1] for key, value in cond.items()}
    noise = torch.randn(1, frames, cfg.motion_dim, generator=torch.Generator().manual_seed(1))
    eager.eval(), compiled.eval()

    def sampler(model: MoDA, scales: tuple[float, float]) -> Callable[[], torch.Tensor]:
        return lambda: sample(model, one, frames, sample_steps, scales[0], scales[1], noise=noise)

    sampling_fns = {
        f"{kind} {scale}": sampler(model, SCALES[scale])
        for scale in SCALES
        for kind, model in (("eager", eager), ("compiled", compiled))
    }
    sampling_flops = {}
    for scale in SCALES:
        with flop_counter() as counter:
            sampling_fns[f"eager {scale}"]()
        sampling_flops[scale] = counter.get_total_flops() / 1e9
        sampling_fns[f"compiled {scale}"]()  # compiles the inference graphs once (the second scale reuses them)
    sampling_times, _ = interleaved(sampling_fns, sample_repeats)
    return {
        "config": name,
        "parameters": sum(p.numel() for p in eager.parameters()),
        "batch": batch,
        "frames": frames,
        "threads": torch.get_num_threads(),
        "step_gflop": step_flops / 1e9,
        "matmul_gflops": statistics.median(p for values in probes.values() for p in values),
        "first_compiled_step_s": compile_s,
        "training": training,
        "sampling_steps": sample_steps,
        "sampling_gflop": sampling_flops,
        "sampling_s": {key: statistics.median(values) for key, values in sampling_times.items()},
        "profile_ms": {key: {"total": total, "rows": rows} for key, (total, rows) in profiles.items()},
    }


def report(r: dict) -> str:
    """The results of one setup as markdown tables."""
    tr, eager = r["training"], r["training"]["eager"]
    lines = [
        f"### {r['config']}: {r['parameters'] / 1e6:.1f} M parameters, batch {r['batch']} x {r['frames']} frames, "
        f"{r['threads']} threads, {r['step_gflop']:.1f} GFLOP/step, matmul {r['matmul_gflops']:.1f} GFLOP/s, "
        f"first compiled step {r['first_compiled_step_s']:.0f} s",
        "",
        "| training step | AdamW | step (median / min) | optimizer step | MFU (median / best) | vs eager |",
        "|---|---|---|---|---|---|",
    ]
    for key, t in tr.items():
        opt = f"{t['optimizer_step_s']:.3f} s" if "optimizer_step_s" in t else "as eager"
        lines.append(
            f"| {key} | {t['optimizer']} | {t['step_s_median']:.3f} / {t['step_s_min']:.3f} s | {opt} | "
            f"{100 * t['mfu_median']:.1f} % / {100 * t['mfu_best']:.1f} % | "
            f"{eager['step_s_median'] / t['step_s_median']:.2f}x |"
        )
    lines += [
        "",
        f"| {r['sampling_steps']}-step sampling, 1 window | GFLOP | eager | compiled |",
        "|---|---|---|---|",
    ]
    for scale, (sa, se) in SCALES.items():
        lines.append(
            f"| {scale} scales ({sa}, {se}) | {r['sampling_gflop'][scale]:.1f} | "
            f"{r['sampling_s'][f'eager {scale}']:.2f} s | {r['sampling_s'][f'compiled {scale}']:.2f} s |"
        )
    lines += [
        "",
        "| op (one training step, self time) | eager ms | | compiled op | compiled ms |",
        "|---|---|---|---|---|",
    ]
    eager_rows, compiled_rows = r["profile_ms"]["eager"]["rows"], r["profile_ms"]["compiled"]["rows"]
    blank = ("", None)
    for i in range(max(len(eager_rows), len(compiled_rows))):
        e = eager_rows[i] if i < len(eager_rows) else blank
        c = compiled_rows[i] if i < len(compiled_rows) else blank
        lines.append(f"| `{e[0]}` | {_ms(e[1])} | | `{c[0]}` | {_ms(c[1])} |")
    totals = r["profile_ms"]["eager"]["total"], r["profile_ms"]["compiled"]["total"]
    lines.append(f"| total (profiled) | {totals[0]:.0f} | | | {totals[1]:.0f} |")
    return "\n".join(lines)


def _ms(value: float | None) -> str:
    return "" if value is None else f"{value:.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=sorted(SETUPS), action="append", help="run only this setup (repeatable)")
    parser.add_argument("--steps", type=int, default=4, help="timed training steps per variant (after warm-up)")
    parser.add_argument("--frames", type=int, default=80, help="frames per window")
    parser.add_argument("--sample-steps", type=int, default=10, help="Euler steps of the timed sampling")
    parser.add_argument("--sample-repeats", type=int, default=2, help="timed samplings per variant")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    inductor_config.cpp.enable_kernel_profile = True  # compiled kernels appear by name in the profile table
    for name in args.only or DEFAULT_SETUPS:
        # Each setup compiles its own block graphs; without a reset they would share dynamo's per-function
        # recompile limit (8), and the second setup's blocks would fall back to eager.
        torch._dynamo.reset()
        result = bench_setup(name, args.steps, args.frames, args.sample_steps, args.sample_repeats)
        print(report(result) + "\n", flush=True)
        if args.json:
            with open(args.json, "a") as f:
                f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
