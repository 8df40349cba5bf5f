"""Resume: a re-run skips finished clips and changes nothing; a killed run resumes to the same bytes."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from data_prep.config import ShardConfig
from data_prep.shard import run
from data_prep.writer import ShardSetWriter, read_jsonl
from moda_train.core.config_loader import load_config

from .conftest import talking_video

REPO = Path(__file__).resolve().parents[2]


def build_corpus(root: Path) -> None:
    for index, speaker in enumerate(("ann", "ben", "cat", "dan")):
        talking_video(root / speaker / f"take{index}.mp4", seconds=3.4)


def write_config(path: Path, root: Path, out: Path) -> Path:
    path.write_text(
        f"input:\n  root: {root}\noutput:\n  dir: {out}\n  shard_max_clips: 1\n"
        "split:\n  val_fraction: 0.0\n  test_fraction: 0.0\nworkers: 0\n"
    )
    return path


def snapshot(out: Path) -> dict[str, str]:
    """File name -> sha256 of everything visible in the output folder."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.iterdir()) if p.is_file()}


def cli(config: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "data_prep.shard", str(config), "--no-progress"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> tuple[Path, Path, dict[str, str]]:
    """The corpus and the output of one uninterrupted run, through the CLI like the runs compared with it."""
    root = tmp_path_factory.mktemp("resume_corpus")
    build_corpus(root)
    out = root.parent / "clean_out"
    config = write_config(root.parent / "clean.yaml", root, out)
    job = cli(config)
    assert job.wait(timeout=300) == 0, job.stderr.read()
    return root, config, snapshot(out)


def test_rerun_skips_everything_and_changes_nothing(clean):
    root, config, first = clean
    cfg, _ = load_config(config, schema=ShardConfig)
    out = Path(cfg.output.dir)
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("*.tar")}
    summary = run(cfg, progress=False)
    assert snapshot(out) == first
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.tar")} == before  # no shard rewritten
    assert summary["clips"]["train"] == 4


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_bytes(clean, tmp_path):
    root, _, first = clean
    out = tmp_path / "out"
    config = write_config(tmp_path / "job.yaml", root, out)
    job = cli(config)
    deadline = time.monotonic() + 120
    while not (out / "train-000001.tar").exists() and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert job.poll() is None, f"run ended before it could be killed: {job.stderr.read()}"
    job.send_signal(signal.SIGKILL)
    job.wait()
    visible = sorted(p.name for p in out.glob("*.tar"))
    assert 2 <= len(visible) < 4
    for name in visible:  # every visible shard is complete
        with tarfile.open(out / name) as tar:
            assert len([m for m in tar if m.name.endswith(".motion.npy")]) == 1

    resumed = cli(config)
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()
    after = snapshot(out)
    assert sorted(after) == sorted(first)
    assert [name for name in first if after[name] != first[name]] == [], "files differ from the clean run"
    assert not list(out.glob(".*"))  # no temporary file left behind


def test_crash_between_rename_and_manifest_is_repaired(clean, tmp_path):
    root, config, _ = clean
    cfg, _ = load_config(config, ["output.dir=" + str(tmp_path / "out")], schema=ShardConfig)
    out = Path(cfg.output.dir)
    run(cfg, progress=False)
    first = snapshot(out)
    # As if the run died right after renaming its last shard: manifest rows missing, a stale partial shard left.
    rows = read_jsonl(out / "manifest.jsonl")
    (out / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:2]))
    (out / ".train-000009.tar.partial").write_bytes(b"half a shard")
    os.remove(out / "stats.json")
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("*.tar")}
    run(cfg, progress=False)
    assert snapshot(out) == first
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.tar")} == before


def test_new_clips_go_to_new_shards_and_old_ones_stay(clean, tmp_path):
    root, config, _ = clean
    cfg, _ = load_config(config, ["output.dir=" + str(tmp_path / "out")], schema=ShardConfig)
    out = Path(cfg.output.dir)
    run(cfg, progress=False)
    before = snapshot(out)
    talking_video(root / "eve" / "take9.mp4", seconds=3.4)
    try:
        summary = run(cfg, progress=False)
    finally:
        (root / "eve" / "take9.mp4").unlink()
        (root / "eve").rmdir()
    after = snapshot(out)
    assert summary["clips"]["train"] == 5
    assert {k: v for k, v in after.items() if k.endswith(".tar") and k in before} == {
        k: v for k, v in before.items() if k.endswith(".tar")
    }
    assert set(after) - set(before) == {"train-000004.tar"}


def test_failed_inputs_are_skipped_until_retried(tmp_path):
    root = tmp_path / "in"
    build_corpus(root)
    broken = root / "fay" / "take.mp4"
    broken.parent.mkdir()
    broken.write_bytes(b"")
    cfg, _ = load_config(write_config(tmp_path / "c.yaml", root, tmp_path / "out"), schema=ShardConfig)
    assert run(cfg, progress=False)["failed"] == 1
    talking_video(broken, seconds=3.4)  # the file gets fixed
    assert run(cfg, progress=False)["failed"] == 1  # still a recorded failure: not retried silently
    retry, _ = load_config(tmp_path / "c.yaml", ["output.retry_failed=true"], schema=ShardConfig)
    summary = run(retry, progress=False)
    assert summary["failed"] == 0 and summary["clips"]["train"] == 5


def test_torn_manifest_append_is_rebuilt_from_the_shard(tmp_path):
    def sample(key: str) -> dict:
        meta = {"source": f"{key}.mp4", "split": "train", "num_frames": 81}
        return {"__key__": key, "motion.npy": b"m" * 10, "meta.json": json.dumps(meta).encode()}

    writer = ShardSetWriter(tmp_path, max_clips=2, max_bytes=2**30)
    for key in ("a", "b", "c"):
        writer.write("train", sample(key), {"source": f"{key}.mp4", "frames": 81})
    writer.close()
    lines = (tmp_path / "manifest.jsonl").read_text().splitlines()
    assert len(lines) == 3
    # The run died while appending the first shard's two rows: one whole line and half of the next survive.
    (tmp_path / "manifest.jsonl").write_text(lines[0] + "\n" + lines[1][:20])
    (tmp_path / "train-000001.tar").unlink()  # and the second shard was never finished
    resumed = ShardSetWriter(tmp_path, max_clips=2, max_bytes=2**30)
    assert resumed.done_keys == {"a", "b"}
    assert [(r["key"], r["shard"]) for r in resumed.rows] == [("a", "train-000000.tar"), ("b", "train-000000.tar")]
