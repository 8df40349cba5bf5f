"""Shard writing with crash-safe resume: `<split>-%06d.tar`, manifest.jsonl, failures.jsonl.

Commit protocol (why a killed run loses no finished shard and duplicates no clip):
- a shard is written by WebDataset's `TarWriter` under a hidden temporary name, fsynced, then renamed to
  `<split>-%06d.tar`; only then are its clips appended to manifest.jsonl. A visible shard is always complete.
- a failure is appended to failures.jsonl (fsynced) as soon as it happens.
- on start, leftover temporary files are deleted; clips in finished shards (manifest rows, or the shard's own
  meta.json members if the run died between rename and manifest append) and clips in failures.jsonl count as
  done and are skipped. Everything else is processed again in the same order, so each split's sequence of clips,
  and with it every shard boundary, comes out exactly as in an uninterrupted run.
Tar members carry a fixed mtime, so a shard's bytes depend only on its content.
"""

from __future__ import annotations

import json
import os
import re
import tarfile
from collections.abc import Iterable
from pathlib import Path

import webdataset as wds

from data_prep.splits import SPLITS
from moda_train.core.motion_layout import NULL_EMOTION

MANIFEST = "manifest.jsonl"
FAILURES = "failures.jsonl"
SOURCES = "sources.jsonl"  # source key -> number of clips: a rerun skips finished sources without opening them
SHARD_PATTERN = "{split}-{index:06d}.tar"
_SHARD_RE = re.compile(r"^(train|val|test)-(\d{6})\.tar$")
_TAR_ENTRY_OVERHEAD = 1024  # tar header + padding per member, for the shard size limit


def read_jsonl(path: Path) -> list[dict]:
    """Rows of a JSONL file; a torn last line (the run died while appending it) is ignored."""
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def write_jsonl(path: Path, rows: Iterable[dict]) -> None:
    """Write JSONL atomically (temporary file, fsync, rename)."""
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w") as handle:
        for row in rows:
            handle.write(json.dumps(row, sort_keys=True) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _append_jsonl(path: Path, rows: Iterable[dict]) -> None:
    with path.open("a") as handle:
        for row in rows:
            handle.write(json.dumps(row, sort_keys=True) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def completed_shards(out_dir: Path) -> list[Path]:
    """Finished shards in the folder, sorted by split then index."""
    shards = [p for p in out_dir.glob("*.tar") if _SHARD_RE.match(p.name)]
    return sorted(shards, key=lambda p: (SPLITS.index(p.name.split("-")[0]), p.name))


def shard_rows(shard: Path) -> list[dict]:
    """Manifest rows rebuilt from a shard's own meta.json members (in their order in the tar)."""
    rows = []
    with tarfile.open(shard) as tar:
        for member in tar:
            if member.name.endswith(".meta.json"):
                meta = json.loads(tar.extractfile(member).read())
                key = member.name[: -len(".meta.json")]
                rows.append(
                    dict(
                        key=key,
                        shard=shard.name,
                        source=meta["source"],
                        split=meta["split"],
                        frames=meta["num_frames"],
                        emotion=meta.get("emotion", NULL_EMOTION),  # no label recorded: unknown
                        status="ok",
                    )
                )
    return rows


class ShardSetWriter:
    """Writes clips into per-split shards under `out_dir`, resuming whatever a previous run finished."""

    def __init__(self, out_dir: str | Path, max_clips: int, max_bytes: int, retry_failed: bool = False) -> None:
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.max_clips, self.max_bytes = max_clips, max_bytes
        for stale in self.out_dir.glob(".*.tar.partial"):
            stale.unlink()
        self.manifest_path = self.out_dir / MANIFEST
        self.failures_path = self.out_dir / FAILURES

        shards = completed_shards(self.out_dir)
        names = {p.name for p in shards}
        logged = read_jsonl(self.manifest_path)
        # Rows are appended one shard at a time, so only the last append can be torn: that shard, and any shard
        # renamed before the run died but not yet logged, get their rows from the shard's own meta.json.
        suspect = {logged[-1]["shard"]} if logged and logged[-1].get("status") == "ok" else set()
        rows = [r for r in logged if r.get("status") == "ok" and r.get("shard") in names - suspect]
        listed = {r["shard"] for r in rows}
        for shard in shards:
            if shard.name not in listed:
                rows.extend(shard_rows(shard))
        write_jsonl(self.manifest_path, rows)
        self.rows: list[dict] = rows
        self.failures: list[dict] = [] if retry_failed else read_jsonl(self.failures_path)
        write_jsonl(self.failures_path, self.failures)

        self.done_keys = {r["key"] for r in rows} | {f["key"] for f in self.failures}
        self.sources_path = self.out_dir / SOURCES
        self.source_clips: dict[str, int] = {r["key"]: r["clips"] for r in read_jsonl(self.sources_path)}
        self._next_index = {split: 0 for split in SPLITS}
        for shard in shards:
            split, index = _SHARD_RE.match(shard.name).groups()
            self._next_index[split] = max(self._next_index[split], int(index) + 1)
        self._open: dict[str, dict] = {}

    def write(self, split: str, sample: dict[str, bytes | str], row: dict) -> None:
        """Add one encoded sample (`__key__` plus byte values) with its manifest row (source, frames)."""
        size = sum(len(v) + _TAR_ENTRY_OVERHEAD for k, v in sample.items() if k != "__key__")
        current = self._open.get(split)
        if current and (current["count"] + 1 > self.max_clips or current["bytes"] + size > self.max_bytes):
            self._finish(split)
            current = None
        if current is None:
            current = self._start(split)
        current["tar"].write(sample)
        current["count"] += 1
        current["bytes"] += size
        current["rows"].append(dict(row, key=sample["__key__"], shard=current["name"], split=split, status="ok"))

    def fail(self, source: str, key: str, reason: str, **extra: object) -> None:
        """Record why a source or clip could not be used (persisted immediately)."""
        row = dict(source=source, key=key, reason=reason, **extra)
        self.failures.append(row)
        self.done_keys.add(key)
        _append_jsonl(self.failures_path, [row])

    def planned(self, key: str, source: str, clips: int) -> None:
        """Record how many clips source `key` is cut into (persisted immediately; its clips count as done only
        once they are in finished shards or failures)."""
        if self.source_clips.get(key) != clips:
            self.source_clips[key] = clips
            _append_jsonl(self.sources_path, [dict(key=key, source=source, clips=clips)])

    def source_rows(self) -> list[dict]:
        """sources.jsonl in a fixed order (by key), whatever order a resumed run appended it in."""
        paths = {r["key"]: r["source"] for r in read_jsonl(self.sources_path)}
        return [dict(key=k, source=paths[k], clips=n) for k, n in sorted(self.source_clips.items())]

    def close(self) -> None:
        """Finish every open shard (a short last shard is still a complete shard)."""
        for split in list(self._open):
            self._finish(split)

    def _start(self, split: str) -> dict:
        name = SHARD_PATTERN.format(split=split, index=self._next_index[split])
        self._next_index[split] += 1
        tmp = self.out_dir / f".{name}.partial"
        handle = tmp.open("wb")
        tar = wds.TarWriter(handle, encoder=False, mtime=0.0)
        self._open[split] = dict(name=name, tmp=tmp, handle=handle, tar=tar, count=0, bytes=0, rows=[])
        return self._open[split]

    def _finish(self, split: str) -> None:
        current = self._open.pop(split)
        current["tar"].close()
        current["handle"].flush()
        os.fsync(current["handle"].fileno())
        current["handle"].close()
        os.replace(current["tmp"], self.out_dir / current["name"])
        _append_jsonl(self.manifest_path, current["rows"])
        self.rows.extend(current["rows"])
        self.done_keys.update(r["key"] for r in current["rows"])


def canonical_rows(rows: list[dict], failures: list[dict]) -> tuple[list[dict], list[dict]]:
    """Manifest (clips by split, shard, position; then failed clips) and failures (by key) in a fixed order, so
    an interrupted-and-resumed run ends with the same files as an uninterrupted one."""
    order = {split: i for i, split in enumerate(SPLITS)}
    ok = sorted(enumerate(rows), key=lambda ir: (order[ir[1]["split"]], ir[1]["shard"], ir[0]))
    failed = sorted(failures, key=lambda f: f["key"])
    manifest = [row for _, row in ok] + [
        dict(key=f["key"], shard=None, source=f["source"], split=f.get("split"), frames=0, status="failed")
        for f in failed
    ]
    return manifest, failed
