"""Import the released MoDA weights: `net-200.pth` + its motion statistics -> a checkpoint of this framework.

    python -m moda_train.import_official --weights pretrained/net-200.pth --stats pretrained/mean.pt \\
        --out checkpoints/moda_b_official.ckpt

writes the checkpoint (weights and EMA = the released weights, the MoDA-B config inferred from the tensors'
shapes, the statistics inside) and `<out stem>.stats.json` beside it: the released statistics with their own
normalisation convention, `(x - mean) / (std + 1e-5)`, recorded (`std_convention: add`, `std_epsilon: 1e-5`) so
that normalisation follows the record, plus the audio (`hubert`) and motion (`liveportrait`) backends. Point
`data.stats_path` at that file to fine-tune from the checkpoint (`train.init_from=`).

What the import changes besides names (docs/official_weights.md):
  * the released motion embedder reads `[previous motion, x_t]`, this framework `[x_t, previous motion]`: the
    column blocks of its first weight are swapped;
  * the sampler's time grid is the released one (`flow.sample_grid: released`), guidance 1.2 on audio and emotion
    together (the released default);
  * the motion convention is recorded (`data.motion_convention: liveportrait-crop,native-expression`, also in the
    statistics file), and generation rescales the reference's scale and translation to the dataset mean scale
    as the released pipeline does (`flow.rescale_reference: true`);
  * the released model's null audio feature was never saved (it is drawn at random when the released code builds
    the model), so an imported model uses this framework's default, the zero feature (`model.null_audio: zeros`).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from omegaconf import OmegaConf
from torch import Tensor

from moda_train.core.cli import exits_on_config_error
from moda_train.core.config_loader import ConfigError, load_config
from moda_train.core.motion_layout import RELEASED_MOTION_CONVENTION
from moda_train.core.stats import STATS_FILE, MotionStats, write_stats_file
from moda_train.experiment import MMDiTExperiment
from moda_train.models.config import ModelConfig
from moda_train.models.moda import MoDA

RELEASED_STD_EPSILON = 1e-5  # the released code normalises with (x - mean) / (std + 1e-5)
RELEASED_GUIDANCE = 1.2  # the released inference script's default cfg_scale (audio and emotion together)
RELEASED_BACKENDS = {"audio_backend": "hubert", "motion_backend": "liveportrait"}

_STREAM = r"(?P<n>\d+)"
# (released name pattern, ours) in the order of docs/model.md's rename table. `{j}` in ours takes the released
# stream index (au1..au3 are streams 1..3 of stage 1); stage 2's `au` is stream 1.
RENAMES: list[tuple[str, str]] = [
    (r"motion_embedder\.mlp\.0\.(?P<p>weight|bias)", "motion_embed.fc1.{p}"),
    (r"motion_embedder\.mlp\.2\.(?P<p>weight|bias)", "motion_embed.fc2.{p}"),
    (r"identity_embedder\.mlp\.0\.(?P<p>weight|bias)", "identity_embed.fc1.{p}"),
    (r"identity_embedder\.mlp\.2\.(?P<p>weight|bias)", "identity_embed.fc2.{p}"),
    (r"time_embedder\.mlp\.0\.(?P<p>weight|bias)", "time_embed.fc1.{p}"),
    (r"time_embedder\.mlp\.2\.(?P<p>weight|bias)", "time_embed.fc2.{p}"),
    (r"audio_embedder\.proj(?P<k>[123])\.(?P<p>weight|bias)", "audio_embed.fc{k}.{p}"),
    (r"audio_embedder\.norm\.weight", "audio_embed.norm.weight"),
    (r"emo_embedder\.embedding_table\.weight", "emotion_embed.table.weight"),
    # stage 1: motion stream `xs` is stream 0, `au{j}` / `audio{j}` are streams j
    (rf"blocks4\.{_STREAM}\.attn1\.qkv_xs\.(?P<p>weight|bias)", "four_stream.{n}.streams.0.qkv.{p}"),
    (rf"blocks4\.{_STREAM}\.attn1\.xs_(?P<qk>[qk])_norm\.weight", "four_stream.{n}.streams.0.{qk}_norm.weight"),
    (rf"blocks4\.{_STREAM}\.attn1\.xs_proj\.(?P<p>weight|bias)", "four_stream.{n}.streams.0.proj.{p}"),
    (rf"blocks4\.{_STREAM}\.xs_mlp\.(?P<fc>fc[12])\.(?P<p>weight|bias)", "four_stream.{n}.streams.0.mlp.{fc}.{p}"),
    (
        rf"blocks4\.{_STREAM}\.adaLN_modulation_xs\.1\.(?P<p>weight|bias)",
        "four_stream.{n}.streams.0.modulation.lin.{p}",
    ),
    (rf"blocks4\.{_STREAM}\.attn1\.qkv_au(?P<j>[123])\.(?P<p>weight|bias)", "four_stream.{n}.streams.{j}.qkv.{p}"),
    (
        rf"blocks4\.{_STREAM}\.attn1\.au_(?P<qk>[qk])_norm(?P<j>[123])\.weight",
        "four_stream.{n}.streams.{j}.{qk}_norm.weight",
    ),
    (
        rf"blocks4\.{_STREAM}\.attn1\.au_proj(?P<j>[123])\.(?P<p>weight|bias)",
        "four_stream.{n}.streams.{j}.proj.{p}",
    ),
    (
        rf"blocks4\.{_STREAM}\.audio_mlp(?P<j>[123])\.(?P<fc>fc[12])\.(?P<p>weight|bias)",
        "four_stream.{n}.streams.{j}.mlp.{fc}.{p}",
    ),
    (
        rf"blocks4\.{_STREAM}\.adaLN_modulation_audio(?P<j>[123])\.1\.(?P<p>weight|bias)",
        "four_stream.{n}.streams.{j}.modulation.lin.{p}",
    ),
    # stage 2: `xs` is stream 0, `au` / `audio` stream 1
    (rf"blocks2\.{_STREAM}\.attn1\.qkv_(?P<s>xs|au)\.(?P<p>weight|bias)", "two_stream.{n}.streams.{s}.qkv.{p}"),
    (
        rf"blocks2\.{_STREAM}\.attn1\.(?P<s>xs|au)_(?P<qk>[qk])_norm\.weight",
        "two_stream.{n}.streams.{s}.{qk}_norm.weight",
    ),
    (rf"blocks2\.{_STREAM}\.attn1\.(?P<s>xs|au)_proj\.(?P<p>weight|bias)", "two_stream.{n}.streams.{s}.proj.{p}"),
    (
        rf"blocks2\.{_STREAM}\.(?P<s>xs|audio)_mlp\.(?P<fc>fc[12])\.(?P<p>weight|bias)",
        "two_stream.{n}.streams.{s}.mlp.{fc}.{p}",
    ),
    (
        rf"blocks2\.{_STREAM}\.adaLN_modulation_(?P<s>xs|audio)\.1\.(?P<p>weight|bias)",
        "two_stream.{n}.streams.{s}.modulation.lin.{p}",
    ),
    # stage 3: single-stream blocks
    (rf"blocks\.{_STREAM}\.attn1\.xs_(?P<qk>[qk])_norm\.weight", "single_stream.{n}.{qk}_norm.weight"),
    (rf"blocks\.{_STREAM}\.qkv_xs\.(?P<p>weight|bias)", "single_stream.{n}.linear1.{p}"),
    (rf"blocks\.{_STREAM}\.linear2\.(?P<p>weight|bias)", "single_stream.{n}.linear2.{p}"),
    (rf"blocks\.{_STREAM}\.adaLN_modulation_xs\.1\.(?P<p>weight|bias)", "single_stream.{n}.modulation.lin.{p}"),
    (r"final_layer\.linear\.(?P<p>weight|bias)", "final.linear.{p}"),
    (r"final_layer\.adaLN_modulation\.1\.(?P<p>weight|bias)", "final.modulation.{p}"),
]
_COMPILED = [(re.compile(pattern), ours) for pattern, ours in RENAMES]
_STAGE2_STREAMS = {"xs": "0", "au": "1", "audio": "1"}


def our_name(released: str) -> str | None:
    """This framework's parameter name for a released `net-200.pth` tensor name; None if no rule matches."""
    for pattern, ours in _COMPILED:
        match = pattern.fullmatch(released)
        if match:
            groups = match.groupdict()
            if "s" in groups:
                groups["s"] = _STAGE2_STREAMS[groups["s"]]
            return ours.format(**groups)
    return None


def _count_blocks(state: Mapping[str, Tensor], prefix: str) -> int:
    indices = {int(m.group(1)) for name in state if (m := re.match(rf"{re.escape(prefix)}\.(\d+)\.", name))}
    return max(indices) + 1 if indices else 0


def infer_model_config(state: Mapping[str, Tensor]) -> dict[str, int | float]:
    """The `model` overrides (sizes) that a released state dict's shapes imply; MoDA-B gives the defaults."""
    needed = ["motion_embedder.mlp.0.weight", "final_layer.linear.weight", "audio_embedder.proj1.weight"]
    needed += [
        "identity_embedder.mlp.0.weight",
        "emo_embedder.embedding_table.weight",
        "time_embedder.mlp.0.weight",
    ]
    missing = [name for name in needed if name not in state]
    if missing:
        raise ValueError(f"not a released MoDA state dict: no {', '.join(missing)}")
    hidden, motion_in = state["motion_embedder.mlp.0.weight"].shape
    motion_dim = state["final_layer.linear.weight"].shape[0]
    if motion_in != 2 * motion_dim:
        raise ValueError(
            f"motion_embedder.mlp.0.weight takes {motion_in} inputs, expected 2 x {motion_dim} "
            "(one previous frame and x_t, as released)"
        )
    head_dim = next((v.shape[0] for k, v in state.items() if k.endswith("xs_q_norm.weight")), None)
    mlp_hidden = next((v.shape[0] for k, v in state.items() if k.endswith("xs_mlp.fc1.weight")), 4 * hidden)
    return {
        "motion_dim": motion_dim,
        "prev_motion_frames": 1,
        "audio_dim": state["audio_embedder.proj1.weight"].shape[1],
        "identity_dim": state["identity_embedder.mlp.0.weight"].shape[1],
        "num_emotions": state["emo_embedder.embedding_table.weight"].shape[0] - 1,
        "hidden_size": hidden,
        "num_heads": hidden // head_dim if head_dim else ModelConfig.num_heads,
        "mlp_ratio": mlp_hidden / hidden,
        "depth_four_stream": _count_blocks(state, "blocks4"),
        "depth_two_stream": _count_blocks(state, "blocks2"),
        "depth_single_stream": _count_blocks(state, "blocks"),
        "timestep_freq_dim": state["time_embedder.mlp.0.weight"].shape[1],
    }


def swap_motion_embedder(weight: Tensor, motion_dim: int) -> Tensor:
    """The released first motion-embedder weight [H, P*C + C] reads [previous motion, x_t]; ours reads
    [x_t, previous motion]: move the x_t columns (the last C) to the front."""
    return torch.cat([weight[:, -motion_dim:], weight[:, :-motion_dim]], dim=1)


def convert_state_dict(released: Mapping[str, Tensor], model_config: ModelConfig) -> dict[str, Tensor]:
    """The released tensors under this framework's names, embedder order fixed, checked against MoDA's own state
    dict: every released tensor mapped exactly once, every parameter of ours filled, equal shapes. One ValueError
    lists every problem."""
    with torch.device("meta"):
        expected = MoDA(model_config).state_dict()
    if model_config.null_audio == "learned":  # not among the released tensors: starts at this framework's zeros
        expected.pop("null_audio")
    converted: dict[str, Tensor] = {}
    unmapped, twice, wrong_shape = [], [], []
    for name, tensor in released.items():
        ours = our_name(name)
        if ours is None or ours not in expected:
            unmapped.append(name)
        elif ours in converted:
            twice.append(f"{name} -> {ours}")
        elif tuple(tensor.shape) != tuple(expected[ours].shape):
            wrong_shape.append(f"{name} {tuple(tensor.shape)} vs {ours} {tuple(expected[ours].shape)}")
        else:
            converted[ours] = tensor.detach().float().clone()
    problems = []
    if unmapped:
        problems.append(f"{len(unmapped)} released tensor(s) with no place in the model: {', '.join(unmapped)}")
    if twice:
        problems.append(f"mapped twice: {', '.join(twice)}")
    if wrong_shape:
        problems.append(f"shapes differ: {', '.join(wrong_shape)}")
    unfilled = sorted(set(expected) - set(converted))
    if unfilled:
        problems.append(f"parameters the release does not provide: {', '.join(unfilled)}")
    if problems:
        raise ValueError("; ".join(problems))
    key = "motion_embed.fc1.weight"
    converted[key] = swap_motion_embedder(converted[key], model_config.motion_dim)
    return converted


def released_stats_record(path: str | Path, motion_dim: int) -> dict:
    """stats.json content of the released statistics file (`mean.pt`: a dict with `mean` and `std` tensors,
    [1, D] or [D]): the recorded std with its own convention, (x - mean) / (std + 1e-5), and the backends."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"released motion statistics not found at {path}")
    raw = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(raw, Mapping) or not {"mean", "std"} <= raw.keys():
        raise ValueError(f"{path}: expected a dict with `mean` and `std` tensors (the released mean.pt)")
    mean, std = (torch.as_tensor(raw[key]).float().reshape(-1) for key in ("mean", "std"))
    if mean.shape != (motion_dim,) or std.shape != (motion_dim,):
        raise ValueError(f"{path}: mean and std must hold {motion_dim} numbers, got {len(mean)} and {len(std)}")
    return {
        "mean": mean.tolist(),
        "std": std.tolist(),
        "std_convention": "add",
        "std_epsilon": RELEASED_STD_EPSILON,
        "audio_backend": RELEASED_BACKENDS["audio_backend"],
        "motion_backend": {"name": RELEASED_BACKENDS["motion_backend"], "convention": RELEASED_MOTION_CONVENTION},
    }


def imported_config(model: Mapping[str, int | float], stats_path: Path, extra: list[str]) -> dict:
    """The resolved experiment config of an imported checkpoint: inferred sizes, released sampler settings."""
    overrides = [f"model.{key}={value}" for key, value in model.items()]
    overrides += [
        "data.train_shards=",
        f"data.stats_path={stats_path}",
        f"data.audio_backend={RELEASED_BACKENDS['audio_backend']}",
        f"data.motion_backend={RELEASED_BACKENDS['motion_backend']}",
        "flow.sample_grid=released",
        "flow.rescale_reference=true",
        f"data.motion_convention={RELEASED_MOTION_CONVENTION}",
        f"flow.guidance_audio={RELEASED_GUIDANCE}",
        f"flow.guidance_emotion={RELEASED_GUIDANCE}",
        f"flow.null_emotion={model['num_emotions']}",
        *extra,
    ]
    _, tree = load_config(None, overrides, schema=MMDiTExperiment)
    return OmegaConf.to_container(tree, resolve=True)


def import_official(
    weights: str | Path,
    stats: str | Path,
    out: str | Path,
    overrides: list[str] | tuple[str, ...] = (),
    log: Callable[[str], None] = print,
) -> Path:
    """Convert `net-200.pth` + `mean.pt` into the checkpoint `out` and `<out stem>.stats.json`; returns `out`."""
    weights, out = Path(weights), Path(out)
    if not weights.is_file():
        raise FileNotFoundError(f"released weights not found at {weights}")
    released = torch.load(weights, map_location="cpu", weights_only=True)
    if isinstance(released, Mapping) and "state_dict" in released:
        released = released["state_dict"]
    if not isinstance(released, Mapping) or not all(isinstance(v, Tensor) for v in released.values()):
        raise ValueError(f"{weights}: not a state dict of tensors (the released net-200.pth is one)")
    sizes = infer_model_config(released)
    stats_path = out.with_name(f"{out.stem}.{STATS_FILE}")
    config = imported_config(sizes, stats_path, list(overrides))
    model_config = ModelConfig(**config["model"])
    state = convert_state_dict(released, model_config)
    record = released_stats_record(stats, model_config.motion_dim)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_stats_file(stats_path, record)
    motion_stats = MotionStats.load(stats_path)  # the divisor follows the recorded convention
    if model_config.null_audio == "learned":
        state["null_audio"] = torch.zeros(model_config.audio_dim)
    checkpoint = {
        # `model` and `ema` share their tensors: torch.save writes them once.
        "state_dict": {
            **{f"model.{k}": v for k, v in state.items()},
            **{f"ema.{k}": v for k, v in state.items()},
            "motion_mean": torch.as_tensor(motion_stats.mean),
            "motion_std": torch.as_tensor(motion_stats.std),
        },
        "hyper_parameters": {"config": config},
        "global_step": 0,
        "official_import": {"weights": weights.name, "stats": Path(stats).name, "tensors": len(released)},
    }
    tmp = out.with_name(f".{out.name}.tmp")
    torch.save(checkpoint, tmp)
    tmp.replace(out)
    params = sum(v.numel() for v in state.values())
    log(f"imported {len(released)} released tensors ({params:,} parameters) from {weights}")
    log(f"checkpoint:  {out}")
    log(f"statistics:  {stats_path}  (std convention: add, epsilon {RELEASED_STD_EPSILON})")
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m moda_train.import_official",
        description="Convert the released MoDA net-200.pth and its motion statistics into a checkpoint of this "
        "framework (for moda_train.generate, evaluation.run checkpoint=... and train.init_from=...).",
    )
    parser.add_argument("--weights", required=True, help="the released net-200.pth")
    parser.add_argument("--stats", required=True, help="the released motion statistics (mean.pt: mean and std)")
    parser.add_argument("--out", required=True, help="checkpoint to write, e.g. checkpoints/moda_b_official.ckpt")
    parser.add_argument(
        "overrides",
        nargs="*",
        help="key=value config overrides stored in the checkpoint, e.g. data.window_frames=80",
    )
    return parser


@exits_on_config_error
def main(argv: list[str] | None = None) -> int:
    """CLI entry point: 0 on success, 1 with a one-line error for bad input, 2 for a bad override."""
    args = build_parser().parse_args(argv)
    try:
        import_official(args.weights, args.stats, args.out, args.overrides)
    except (FileNotFoundError, ValueError) as err:
        if isinstance(err, ConfigError):
            raise
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
