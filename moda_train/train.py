"""Train a model: `python -m moda_train.train EXPERIMENT.yaml [key=value ...]`.

The same command works on a laptop, under torchrun and under `srun` (Lightning reads the ranks from the
environment). Run `--help` for every config group and key.
"""

from __future__ import annotations

import argparse
import sys

from moda_train.core.cli import exits_on_config_error
from moda_train.core.config_loader import describe_schema
from moda_train.experiment import EXPERIMENTS, load_experiment


def build_parser() -> argparse.ArgumentParser:
    schemas = "\n\n".join(
        f"=== task: {name} ===\n{describe_schema(schema)}" for name, schema in EXPERIMENTS.items()
    )
    parser = argparse.ArgumentParser(
        prog="python -m moda_train.train",
        description="Train a MoDA model from an experiment YAML (see configs/experiments/).",
        epilog=f"Config groups and keys (override any with key=value):\n\n{schemas}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("experiment", help="experiment YAML, e.g. configs/experiments/mmdit_tiny_cpu.yaml")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train.max_steps=100")
    parser.add_argument(
        "--print-config", action="store_true", help="print the resolved config and exit without training"
    )
    return parser


@exits_on_config_error
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
