"""Train a model: `moda-train EXPERIMENT [key=value ...]` (or `python -m moda_train.train ...`).

EXPERIMENT is a YAML file or the name of a shipped experiment (`moda-train --list-experiments`). The same command
works on a laptop, under torchrun and under `srun` (Lightning reads the ranks from the environment). Run `--help`
for every config group and key.
"""

from __future__ import annotations

import argparse
import sys

from moda_train.core.cli import exits_on_config_error
from moda_train.core.config_loader import CONFIGS_ROOT, config_names, describe_schema
from moda_train.experiment import EXPERIMENTS, load_experiment


def build_parser() -> argparse.ArgumentParser:
    schemas = "\n\n".join(
        f"=== task: {name} ===\n{describe_schema(schema)}" for name, schema in EXPERIMENTS.items()
    )
    parser = argparse.ArgumentParser(
        prog="moda-train",
        description="Train a MoDA model from an experiment YAML (see configs/experiments/).",
        epilog=f"Config groups and keys (override any with key=value):\n\n{schemas}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "experiment",
        nargs="?",
        help="experiment YAML or shipped name: configs/experiments/mmdit_tiny_cpu.yaml or mmdit_tiny_cpu",
    )
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train.max_steps=100")
    parser.add_argument(
        "--print-config", action="store_true", help="print the resolved config and exit without training"
    )
    parser.add_argument(
        "--list-experiments",
        action="store_true",
        help="list the shipped experiments with their first comment line",
    )
    return parser


def list_experiments() -> str:
    """One line per shipped experiment: its name and the first line of its header comment."""
    lines = [f"experiments in {CONFIGS_ROOT / 'experiments'}:"]
    for name in config_names("experiments"):
        header = (CONFIGS_ROOT / "experiments" / f"{name}.yaml").read_text().splitlines()[:1]
        about = header[0].lstrip("# ").strip() if header and header[0].startswith("#") else ""
        lines.append(f"  {name:<18} {about}")
    return "\n".join(lines)


@exits_on_config_error
def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list_experiments:
        print(list_experiments())
        return 0
    if args.experiment is None:
        parser.error("the experiment is required (a YAML file or a name from --list-experiments)")
    typed, tree = load_experiment(args.experiment, args.overrides)
    if args.print_config:
        from omegaconf import OmegaConf

        print(OmegaConf.to_yaml(tree))
        return 0
    from moda_train.launch.resume import ResumeError
    from moda_train.launch.run import run_experiment

    try:
        run_experiment(typed, tree, experiment_path=args.experiment)
    except ResumeError as err:
        print(f"resume error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
