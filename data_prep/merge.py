"""Joining the task folders of a Slurm array run into one shard set."""

from __future__ import annotations

from pathlib import Path

from data_prep.config import ShardConfig
from data_prep.runner import summarize
from data_prep.splits import SPLITS
from data_prep.stats import merge_stats
from data_prep.writer import (
    FAILURES,
    MANIFEST,
    SHARD_PATTERN,
    canonical_rows,
    read_jsonl,
    write_jsonl,
)
from moda_train.core.files import link_or_copy
from moda_train.core.stats import STATS_FILE, read_stats_file, write_stats_file


def merge(cfg: ShardConfig) -> dict:
    """Join the task folders of an array job into `<output.dir>`: shards renumbered per split in task order,
    manifests and failures concatenated, statistics merged exactly. Safe to re-run at any time."""
    out = Path(cfg.output.dir)
    task_dirs = [out / "tasks" / f"{i:04d}" for i in range(cfg.num_tasks)]
    unfinished = [str(d) for d in task_dirs if not (d / STATS_FILE).is_file()]
    if unfinished:
        raise ValueError(f"cannot merge: these tasks have not finished (no {STATS_FILE}): {', '.join(unfinished)}")
    rows, failures, stats = [], [], []
    next_index = {split: 0 for split in SPLITS}
    for directory in task_dirs:
        task_rows = [r for r in read_jsonl(directory / MANIFEST) if r["status"] == "ok"]
        renamed = {}
        for row in task_rows:
            if row["shard"] not in renamed:
                split = row["split"]
                renamed[row["shard"]] = SHARD_PATTERN.format(split=split, index=next_index[split])
                next_index[split] += 1
        for old, new in renamed.items():
            if not (directory / old).is_file():
                raise ValueError(f"cannot merge: shard {directory / old} is missing")
            # the task folder keeps its shard, so a re-submitted task still resumes and the merge can run again
            link_or_copy(directory / old, out / new)
        rows.extend(dict(r, shard=renamed[r["shard"]]) for r in task_rows)
        failures.extend(read_jsonl(directory / FAILURES))
        stats.append(read_stats_file(directory / STATS_FILE))
    manifest, failed = canonical_rows(rows, failures)
    write_jsonl(out / MANIFEST, manifest)
    write_jsonl(out / FAILURES, failed)
    write_stats_file(out / STATS_FILE, merge_stats(stats))
    return summarize(out, manifest, failed)
