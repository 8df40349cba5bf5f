"""Talking-head corpora to WebDataset shards: `python -m data_prep.shard CONFIG.yaml [key=value ...]`.

Per clip: decode at 25 fps, face track and 256 px crops, 70-d motion + identity of the reference (first) frame,
16 kHz audio features aligned to the frames, emotion label, meta.json; written to `<split>-%06d.tar` with
manifest.jsonl, failures.jsonl and stats.json (schema in docs/CONTRACTS.md). Re-running the same command skips
what is done; an interrupted run resumes without losing or duplicating clips (see data_prep/writer.py).
With `num_tasks > 1` each Slurm array task writes under `<output.dir>/tasks/<task_index>` and
`python -m data_prep.shard --merge CONFIG.yaml` joins them into `<output.dir>`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from data_prep.config import ShardConfig
from data_prep.merge import merge
from data_prep.runner import prepare, run
from data_prep.splits import SPLITS
from moda_train.core.cli import exits_on_config_error
from moda_train.core.config_loader import ConfigError, describe_schema, load_config


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m data_prep.shard",
        description="Turn a talking-head corpus into WebDataset shards (see configs/data_prep/).",
        epilog=f"Config keys (override any with key=value):\n{describe_schema(ShardConfig)}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("config", help="shard config YAML, e.g. configs/data_prep/demo.yaml")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. workers=4 output.dir=out")
    parser.add_argument("--merge", action="store_true", help="merge the task folders of a Slurm array run")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (for logs)")
    parser.add_argument(
        "--dry-run", action="store_true", help="check the config, list the inputs per split, write nothing"
    )
    return parser


@exits_on_config_error
def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns 2 on a configuration error (before any work), 0 on success."""
    # Intermixed: options may come before, between or after the key=value overrides.
    args = build_parser().parse_intermixed_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg, _ = load_config(args.config, args.overrides, schema=ShardConfig, group="data_prep")
    try:
        if args.dry_run:
            tasks, backends, _ = prepare(cfg)
            per_split = {split: sum(t.split == split for t in tasks) for split in SPLITS}
            summary = {"inputs": per_split, **backends}
        else:
            summary = merge(cfg) if args.merge else run(cfg, progress=not args.no_progress)
    except ConfigError:
        raise  # exit code 2, from exits_on_config_error
    except ValueError as err:  # merge of unfinished or inconsistent task folders
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
