"""One-GPU check of the cluster recipe: MoDA-B training steps in bf16-mixed under DeepSpeed ZeRO-2, one process.

    python benchmarks/gpu_check.py            # on a node with one CUDA GPU (meant to take minutes on an H100/H200)
    python benchmarks/gpu_check.py --dry-run  # tiny model on CPU: checks the script itself; figures meaningless

It trains through the project's own Trainer set-up (`build_trainer`, the strategy, precision and callbacks of a
real run, `configs/experiments/mmdit_moda_b.yaml` with `train.devices=1`) on random batches in the data contract's
shapes held in memory, so the figures are the model's and DeepSpeed's, not the loader's. It prints:

- whether SDPA can run the model's attention with a fused kernel: one forward pass with SDPA restricted to
  flash attention, then to memory-efficient attention (SDPA prefers those over the math kernel whenever one
  accepts the inputs); the check fails when neither does;
- windows/s and step time (median of the timed steps after warm-up, CUDA-synchronised), peak GPU memory;
- model FLOP utilisation: the step's FLOPs (counted by torch's FlopCounterMode on a meta-device copy of the model,
  forward + backward) per second, over the bf16 matmul throughput measured in the same run;
- the same training steps with `model.compile=true` (the MMDiT blocks under torch.compile), side by side with the
  eager step (skipped with --no-compile; off in --dry-run unless --compile is given);
- real-time factor of generating the motion for 10 s of speech (250 frames at 25 fps: MoDA's windows of 80 frames
  with 16 overlapping, 10 guided Euler steps each, EMA weights, bf16 autocast); audio features are random, so the
  speech encoder's and the renderer's time are not included;
- frames/s of the LivePortrait renderer at the released network sizes (random weights), 512 px faces pasted into
  a photo, batch 8, float16 on the GPU (`--renderer-frames`, default 64; 0 in --dry-run unless given).

Exits 2 without a CUDA device (unless --dry-run), 1 when no fused attention kernel runs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
from omegaconf import OmegaConf

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from bench_generation import time_liveportrait  # noqa: E402  (benchmarks/ is this script's folder)
from bench_mmdit import flop_counter, random_batch  # noqa: E402

from moda_train.core.motion_layout import group_indices  # noqa: E402
from moda_train.experiment import load_experiment  # noqa: E402
from moda_train.flow.loss import flow_loss  # noqa: E402
from moda_train.generation.motion_generator import window_starts  # noqa: E402
from moda_train.launch.run import build_trainer  # noqa: E402
from moda_train.lit.mmdit_module import MoDALightningModule  # noqa: E402
from moda_train.models.moda import MoDA  # noqa: E402

FPS = 25
SPEECH_SECONDS = 10.0
OVERLAP = 16  # frames shared by consecutive windows in long-audio generation (MoDA's 80/64 scheme)


class StepTimer(L.Callback):
    """Wall time of every training batch (synchronised on CUDA) and peak memory."""

    def __init__(self, warmup: int, device: torch.device) -> None:
        self.warmup, self.device, self.times = warmup, device, []
        self._start = 0.0

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == self.warmup and self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        self._sync()
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._sync()
        if batch_idx >= self.warmup:
            self.times.append(time.perf_counter() - self._start)


def contract_batch(model_cfg, batch: int, frames: int) -> dict:
    """A training batch in the data pipeline's format (see moda_train/data/wds.py `collate`)."""
    x0, cond = random_batch(model_cfg, batch, frames)
    return {
        "motion": x0,
        "prev_motion": cond["prev_motion"],
        "audio": cond["audio"],
        "identity": cond["identity"],
        "emotion": cond["emotion"] % 8,
        "start": torch.zeros(batch, dtype=torch.long),
        "key": [f"random-{i}" for i in range(batch)],
    }


class RepeatBatch(torch.utils.data.IterableDataset):
    def __init__(self, batch: dict, count: int) -> None:
        self.batch, self.count = batch, count

    def __iter__(self):
        for _ in range(self.count):
            yield self.batch


def matmul_tflops(device: torch.device, dtype: torch.dtype, size: int, repeats: int = 10) -> float:
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    best = float("inf")
    for _ in range(3):
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 * repeats / best / 1e12


def step_flops(model_cfg, flow_cfg, batch: int, frames: int) -> float:
    """FLOPs of one training step's forward + backward, counted on a meta-device copy (no memory, no time)."""
    with torch.device("meta"):
        model = MoDA(model_cfg)
        x0, cond = random_batch(model_cfg, batch, frames)
    groups = group_indices() if model_cfg.motion_dim == 70 else None
    with flop_counter() as counter:
        flow_loss(model, x0, cond, flow_cfg, groups)["loss"].backward()
    return float(counter.get_total_flops())


def fused_attention_kernels(model: torch.nn.Module, batch: dict, device: torch.device) -> dict[str, bool]:
    """Which fused SDPA kernels run the model's attention (one forward each, restricted to that kernel)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    x0 = batch["motion"][:2].to(device)
    cond = {k: batch[k][:2].to(device) for k in ("audio", "identity", "emotion", "prev_motion")}
    t = torch.full((2,), 500.0, device=device)
    result = {}
    for name, backend in (
        ("flash", SDPBackend.FLASH_ATTENTION),
        ("mem_efficient", SDPBackend.EFFICIENT_ATTENTION),
    ):
        try:
            with torch.no_grad(), sdpa_kernel([backend]), torch.autocast("cuda", dtype=torch.bfloat16):
                model(x0, t, **cond)
            result[name] = True
        except RuntimeError:
            result[name] = False
    return result


def real_time_factor(module: MoDALightningModule, batch: dict, device: torch.device) -> float:
    """Seconds to generate the motion of SPEECH_SECONDS of speech, per second of speech."""
    window = module.cfg.data.window_frames
    starts = window_starts(int(SPEECH_SECONDS * FPS), window, OVERLAP)
    cond = {k: batch[k][:1].to(device) for k in ("audio", "identity", "emotion", "prev_motion")}
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

    def generate() -> None:
        for _ in starts:  # windows run one after another: each conditions on the previous one's motion
            module.sample(cond, window, seed=0)
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    with torch.no_grad(), autocast:
        generate()  # warm-up
        start = time.perf_counter()
        generate()
    return (time.perf_counter() - start) / SPEECH_SECONDS


def timed_training(
    module: MoDALightningModule, cfg, batch: dict, args: argparse.Namespace, device: torch.device, out: Path
) -> list[float]:
    """Train `module` (of experiment `cfg`) on `batch` through the project's Trainer set-up; the step times."""
    trainer = build_trainer(cfg, out)
    timer = StepTimer(args.warmup, device)
    trainer.callbacks.append(timer)
    loader = torch.utils.data.DataLoader(RepeatBatch(batch, args.warmup + args.steps), batch_size=None)
    trainer.fit(module, train_dataloaders=loader)
    engine = trainer.strategy.deepspeed_engine
    print(f"DeepSpeed ZeRO stage {engine.zero_optimization_stage()}, bf16 {engine.bfloat16_enabled()}")
    return timer.times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="tiny model on CPU: check the script, not the GPU")
    parser.add_argument("--steps", type=int, default=20, help="timed training steps (after warm-up)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed training steps first")
    parser.add_argument("--micro-batch", type=int, default=0, help="windows per step (default: the recipe's)")
    parser.add_argument(
        "--compile", action=argparse.BooleanOptionalAction, default=None, help="also time model.compile=true"
    )
    parser.add_argument("--renderer-frames", type=int, default=None, help="LivePortrait frames to time (0: skip)")
    args = parser.parse_args(argv)
    compiled = (not args.dry_run) if args.compile is None else args.compile
    renderer_frames = (0 if args.dry_run else 64) if args.renderer_frames is None else args.renderer_frames
    if not args.dry_run and not torch.cuda.is_available():
        print("gpu_check: no CUDA device visible; run it on a GPU node, or pass --dry-run to check it on CPU")
        return 2
    device = torch.device("cpu") if args.dry_run else torch.device("cuda", 0)
    experiment = "mmdit_tiny_cpu.yaml" if args.dry_run else "mmdit_moda_b.yaml"
    out = Path(tempfile.mkdtemp(prefix="gpu_check-"))
    overrides = [
        "data.train_shards=unused",  # batches come from memory
        "data.stats_path=unused",
        "data.val_shards=",
        "train.strategy=deepspeed",
        "train.deepspeed_config=configs/deepspeed/zero2.json",
        "train.precision=bf16-mixed",
        "train.devices=1",
        f"train.accelerator={device.type if device.type == 'cpu' else 'gpu'}",
        f"train.max_steps={args.warmup + args.steps}",
        f"train.checkpoint_every_n_steps={10 * (args.warmup + args.steps)}",
        f"train.out_dir={out}",
        "train.run_name=gpu_check",
    ]
    if args.micro_batch:
        overrides.append(f"train.micro_batch_size={args.micro_batch}")
    cfg, tree = load_experiment(REPO_ROOT / "configs" / "experiments" / experiment, overrides)
    micro = args.micro_batch or cfg.train.micro_batch_size
    overrides.append(f"train.global_batch_size={micro}")  # one process, no accumulation: a step is one batch
    cfg, tree = load_experiment(REPO_ROOT / "configs" / "experiments" / experiment, overrides)

    frames = cfg.data.window_frames
    module = MoDALightningModule(OmegaConf.to_container(tree, resolve=True))
    params = sum(p.numel() for p in module.model.parameters())
    batch = contract_batch(module.cfg.model, micro, frames)
    print(
        f"model: {experiment}, {params / 1e6:.1f} M parameters; batch {micro} x {frames} frames; device {device}"
    )
    if device.type == "cuda":
        print(f"GPU: {torch.cuda.get_device_name(device)}")
        kernels = fused_attention_kernels(module.model.to(device), batch, device)
        module.model.cpu()
        print(f"SDPA fused kernels that run the model's attention: {kernels}")
        if not any(kernels.values()):
            print("gpu_check: FAILED: no fused SDPA kernel accepts the model's attention (math kernel only)")
            return 1
    else:
        print("SDPA fused-kernel check: skipped on CPU")

    times = timed_training(module, cfg, batch, args, device, out / "eager")
    step = statistics.median(times)
    flops = step_flops(module.cfg.model, cfg.flow, micro, frames)
    matmul = matmul_tflops(device, torch.bfloat16, 8192 if device.type == "cuda" else 512)
    print(f"step time: {step * 1e3:.1f} ms (median of {len(times)}, min {min(times) * 1e3:.1f} ms)")
    print(f"windows/s: {micro / step:.1f}")
    if device.type == "cuda":
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB")
    achieved = flops / step / 1e12
    print(
        f"MFU: {100 * achieved / matmul:.1f} % ({flops / 1e12:.2f} TFLOP/step, {achieved:.1f} TFLOP/s "
        f"of {matmul:.1f} TFLOP/s bf16 matmul measured here)"
    )
    if compiled:
        compiled_cfg, compiled_tree = load_experiment(
            REPO_ROOT / "configs" / "experiments" / experiment, [*overrides, "model.compile=true"]
        )
        compiled_module = MoDALightningModule(OmegaConf.to_container(compiled_tree, resolve=True))
        compiled_times = timed_training(compiled_module, compiled_cfg, batch, args, device, out / "compiled")
        del compiled_module
        compiled_step = statistics.median(compiled_times)
        compiled_mfu = 100 * flops / compiled_step / 1e12 / matmul
        print(
            f"compiled step time: {compiled_step * 1e3:.1f} ms (median of {len(compiled_times)}); "
            f"eager / compiled = {step / compiled_step:.2f}x; compiled MFU {compiled_mfu:.1f} %"
        )
    # On the GPU: the bf16 module DeepSpeed trained, under autocast. On CPU (dry run): fp32, bf16 is slow there.
    rtf = real_time_factor(module.to(device) if device.type == "cuda" else module.float(), batch, device)
    print(
        f"real-time factor, motion for {SPEECH_SECONDS:.0f} s of speech: {rtf:.3f} (< 1 is faster than real time)"
    )
    if renderer_frames:
        dtype = "float16" if device.type == "cuda" else "float32"
        result = time_liveportrait(renderer_frames, 8, str(device), dtype)
        print(f"LivePortrait renderer (released sizes, random weights, batch 8, {dtype}): {result}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
