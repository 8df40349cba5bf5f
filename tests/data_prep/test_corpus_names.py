"""File names from real corpora: names that collide once made safe, non-Latin and non-UTF-8 names, a later file
whose name looks like an existing clip key, and entries that are not files. Every entry with a video ending ends
in the manifest or in failures.jsonl, each exactly once, and nothing stops the run."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

from data_prep.shard import run
from data_prep.writer import read_jsonl

from .conftest import shard_config, talking_video

GOOD = ["x.mp4", "x.mov", "a b.mp4", "a_b.mp4", "北京.mp4", "Москва.mp4", os.fsdecode(b"caf\xe9.mp4")]
BAD = {
    "folder.mp4": "is a folder, not a video file",
    "pipe.mp4": "not a regular file: a named pipe (FIFO)",
    "loop_a.mp4": "symbolic link loop",
    "loop_b.mp4": "symbolic link loop",
}


def snapshot(out: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    root = tmp_path_factory.mktemp("names")
    video = talking_video(root.parent / f"{root.name}_src.mp4", seconds=3.4)
    for name in GOOD:
        shutil.copy(video, root / name)
    (root / "folder.mp4").mkdir()
    os.mkfifo(root / "pipe.mp4")
    (root / "loop_a.mp4").symlink_to(root / "loop_b.mp4")
    (root / "loop_b.mp4").symlink_to(root / "loop_a.mp4")
    (root / "notes.txt").write_text("not a video ending: not an input")
    out = root.parent / f"{root.name}_out"
    cfg = shard_config(root, out, "split.val_fraction=0", "split.test_fraction=0")
    return root, cfg, run(cfg, progress=False), out


def test_every_entry_ends_in_manifest_or_failures_exactly_once(sharded):
    root, _, summary, out = sharded
    manifest = [r for r in read_jsonl(out / "manifest.jsonl") if r["status"] == "ok"]
    failures = read_jsonl(out / "failures.jsonl")
    assert sorted(r["source"] for r in manifest) == sorted(GOOD)
    assert {f["source"]: f["reason"][: len(BAD[f["source"]])] for f in failures} == BAD
    entries = sorted(name for name in os.listdir(root) if Path(name).suffix in (".mp4", ".mov"))
    assert sorted(r["source"] for r in manifest + failures) == entries
    keys = [r["key"] for r in manifest + failures]
    assert len(keys) == len(set(keys))
    assert summary["clips"]["train"] == len(GOOD)


def test_rerun_opens_no_finished_source(sharded):
    root, cfg, _, out = sharded
    before = snapshot(out)
    # Were the finished sources probed again, the emptied files would now fail as "empty file".
    for name in GOOD:
        (root / name).write_bytes(b"")
    summary = run(cfg, progress=False)
    assert snapshot(out) == before and summary["this_run"]["video_seconds"] == 0


def test_file_named_like_a_clip_key_added_later_is_processed(tmp_path):
    root, out = tmp_path / "in", tmp_path / "out"
    talking_video(root / "take.mp4", seconds=3.4)
    cfg = shard_config(root, out, "split.val_fraction=0", "split.test_fraction=0")
    run(cfg, progress=False)
    shutil.copy(root / "take.mp4", root / "take_c000.mp4")  # its name equals take.mp4's first clip key
    summary = run(cfg, progress=False)
    rows = read_jsonl(out / "manifest.jsonl")
    assert sorted(r["source"] for r in rows) == ["take.mp4", "take_c000.mp4"] and summary["clips"]["train"] == 2
    assert read_jsonl(out / "failures.jsonl") == []
