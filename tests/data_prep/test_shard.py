"""End to end: a small labelled corpus becomes shards that WebDataset reads back with the documented schema."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import webdataset as wds

from data_prep.config import ShardConfig
from data_prep.shard import main, merge, run
from data_prep.writer import completed_shards, read_jsonl
from moda_train.core.config_loader import CONFIGS_ROOT, load_config
from moda_train.core.motion_layout import EMOTIONS, MOTION_DIM, NULL_EMOTION, ROTATION, TRANSLATION

from .conftest import shard_config, talking_video

META_FIELDS = {
    "corpus", "source", "speaker", "start_s", "end_s", "fps", "num_frames", "split", "emotion",
    "motion_backend", "audio_backend",
}  # fmt: skip
LABELS = """path,speaker,emotion,split
alice/one.mp4,alice,happy,train
alice/two.mp4,alice,,
bob/one.mp4,bob,sad,val
carol/one.mp4,carol,neutral,test
"""


def build_corpus(root: Path) -> Path:
    talking_video(root / "alice" / "one.mp4")
    talking_video(root / "alice" / "two.mp4", seconds=7.0)  # cut into two 3.5 s clips (clip.max_seconds=6.5)
    talking_video(root / "bob" / "one.mp4", size=(240, 240))
    talking_video(root / "carol" / "one.mp4", seconds=3.4)
    (root / "labels.csv").write_text(LABELS)
    return root / "labels.csv"


def corpus_config(root: Path, out: Path, *overrides: str):
    return shard_config(
        root, out, f"input.annotations={root / 'labels.csv'}", "clip.max_seconds=6.5", "output.shard_max_clips=2",
        *overrides,
    )  # fmt: skip


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    build_corpus(root)
    return root


@pytest.fixture(scope="module")
def sharded(corpus) -> tuple[dict, Path]:
    out = corpus.parent / (corpus.name + "_shards")
    return run(corpus_config(corpus, out), progress=False), out


def read_split(out: Path, split: str) -> list[dict]:
    urls = [str(p) for p in completed_shards(out) if p.name.startswith(f"{split}-")]
    if not urls:
        return []
    return list(wds.WebDataset(urls, shardshuffle=False, empty_check=False).decode("rgb8"))


def test_webdataset_reads_the_documented_schema(sharded):
    summary, out = sharded
    assert summary["clips"] == {"train": 3, "val": 1, "test": 1}
    assert sorted(p.name for p in completed_shards(out)) == [
        "test-000000.tar", "train-000000.tar", "train-000001.tar", "val-000000.tar",
    ]  # fmt: skip
    samples = read_split(out, "train") + read_split(out, "val") + read_split(out, "test")
    assert len(samples) == 5
    for sample in samples:
        meta = sample["meta.json"]
        frames = meta["num_frames"]
        assert set(sample) >= {"__key__", "motion.npy", "audio.npy", "identity.npy", "ref.jpg", "emotion.cls"}
        assert sample["motion.npy"].dtype == np.float32 and sample["motion.npy"].shape == (frames, MOTION_DIM)
        assert sample["audio.npy"].dtype == np.float16 and sample["audio.npy"].shape == (frames, 4, 80)
        assert sample["identity.npy"].dtype == np.float32 and sample["identity.npy"].shape == (63,)
        assert sample["ref.jpg"].shape == (256, 256, 3) and sample["ref.jpg"].dtype == np.uint8
        assert META_FIELDS <= set(meta) and meta["fps"] == 25
        assert meta["motion_backend"]["name"] == "landmarks" and meta["audio_backend"]["name"] == "logmel"
        assert int(sample["emotion.cls"]) == meta["emotion"]
        assert np.isfinite(sample["motion.npy"]).all() and np.isfinite(sample["audio.npy"]).all()
        assert frames >= 81 and abs(meta["end_s"] - meta["start_s"] - frames / 25) < 1e-3
    by_key = {s["__key__"]: s["meta.json"] for s in samples}
    assert by_key["generic-alice-one_c000"]["emotion"] == EMOTIONS.index("happiness")
    assert by_key["generic-alice-two_c001"]["emotion"] == NULL_EMOTION
    assert by_key["generic-alice-two_c001"]["start_s"] == pytest.approx(3.5)
    assert {m["split"] for m in by_key.values() if m["speaker"] == "alice"} == {"train"}


def test_manifest_and_stats_match_the_shards(sharded):
    _, out = sharded
    rows = read_jsonl(out / "manifest.jsonl")
    assert all(set(r) == {"key", "shard", "source", "split", "frames", "emotion", "status"} for r in rows)
    for split in ("train", "val", "test"):
        for sample in read_split(out, split):
            row = next(r for r in rows if r["key"] == sample["__key__"])
            assert (row["split"], row["frames"], row["status"]) == (split, len(sample["motion.npy"]), "ok")
            assert row["emotion"] == int(sample["emotion.cls"])
    train = np.concatenate([s["motion.npy"] for s in read_split(out, "train")]).astype(np.float64)
    stats = json.loads((out / "stats.json").read_text())
    assert stats["num_frames"] == len(train) and stats["num_clips"] == 3
    np.testing.assert_allclose(stats["mean"], train.mean(0), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(stats["std"], train.std(0), rtol=1e-6, atol=1e-9)
    assert stats["audio_frame_shape"] == [4, 80] and stats["audio_backend"]["name"] == "logmel"
    assert (out / "failures.jsonl").read_text() == ""


def test_head_sway_shows_up_in_the_translation(sharded):
    _, out = sharded
    sample = next(s for s in read_split(out, "train") if s["__key__"] == "generic-alice-one_c000")
    tx = sample["motion.npy"][:, TRANSLATION.start]
    sway = np.sin(2 * np.pi * 0.5 * np.arange(len(tx)) / 25)  # the test video's 0.5 Hz left-right sway
    assert np.corrcoef(tx, sway)[0, 1] > 0.9


def test_merge_of_array_tasks_equals_one_run(corpus, sharded, tmp_path):
    _, single = sharded
    out = tmp_path / "array"
    for index in range(2):
        run(corpus_config(corpus, out, "num_tasks=2", f"task_index={index}"), progress=False)
    summary = merge(corpus_config(corpus, out, "num_tasks=2"))
    assert summary["clips"] == {"train": 3, "val": 1, "test": 1}
    merged, one = (json.loads((d / "stats.json").read_text()) for d in (out, single))
    assert merged["num_frames"] == one["num_frames"] and merged["num_clips"] == one["num_clips"]
    np.testing.assert_allclose(merged["mean"], one["mean"], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(merged["std"], one["std"], rtol=1e-9, atol=1e-12)
    keys = sorted(r["key"] for r in read_jsonl(out / "manifest.jsonl"))
    assert keys == sorted(r["key"] for r in read_jsonl(single / "manifest.jsonl"))
    for row in read_jsonl(out / "manifest.jsonl"):
        assert (out / row["shard"]).is_file()
    assert merge(corpus_config(corpus, out, "num_tasks=2")) == summary  # re-running the merge changes nothing


@pytest.mark.slow
def test_two_workers_write_the_same_bytes(corpus, sharded, tmp_path):
    _, single = sharded
    out = tmp_path / "parallel"
    run(corpus_config(corpus, out, "workers=2"), progress=False)
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(p.name for p in single.iterdir())
    for name in names:
        digest = (hashlib.sha256((d / name).read_bytes()).hexdigest() for d in (out, single))
        assert next(digest) == next(digest), name


def test_cli_help_lists_every_key(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    for key in ("input.layout", "output.shard_max_clips", "clip.min_seconds", "split.val_fraction",
                "face.crop_size", "motion.backend", "audio.backend", "workers", "num_tasks"):  # fmt: skip
        assert key in text


@pytest.mark.slow
def test_demo_corpus_lips_follow_speech_and_sway_shows_in_pose(tmp_path):
    """The shipped demo config on a 2-video demo corpus: the animated mouth moves the lip dimensions in time
    with the speech envelope, and the head sway shows up in rotation and translation."""
    from data_prep.demo_corpus import build_corpus as build_demo

    videos = tmp_path / "videos"
    build_demo(videos, num_videos=2, num_speakers=2, seconds=4.0, seed=0, workers=1, progress=False)
    overrides = [f"input.root={videos}", f"input.annotations={videos / 'labels.csv'}", f"output.dir={tmp_path}/s"]
    cfg, _ = load_config(CONFIGS_ROOT / "data_prep" / "demo.yaml", [*overrides, "workers=0"], schema=ShardConfig)
    run(cfg, progress=False)
    samples = [s for split in ("train", "val", "test") for s in read_split(tmp_path / "s", split)]
    assert len(samples) == 2
    for sample in samples:
        motion, stem = sample["motion.npy"], Path(sample["meta.json"]["source"]).stem
        envelope = np.load(videos / f"{stem}.envelope.npy")[: len(motion)]
        sway = np.load(videos / f"{stem}.sway.npy")[: len(motion)]  # roll (degrees), x, y shift (pixels)
        # Mouth opening: lower inner lip (keypoint 17) minus upper inner lip (keypoint 12), vertical axis.
        opening = motion[:, 3 * 17 + 1] - motion[:, 3 * 12 + 1]
        assert np.corrcoef(opening, envelope)[0, 1] > 0.8
        assert np.corrcoef(motion[:, ROTATION.start + 2], sway[:, 0])[0, 1] > 0.9
        assert np.corrcoef(motion[:, TRANSLATION.start], sway[:, 1])[0, 1] > 0.7
        assert np.corrcoef(motion[:, TRANSLATION.start + 1], sway[:, 2])[0, 1] > 0.8


@pytest.mark.parametrize("path", sorted((CONFIGS_ROOT / "data_prep").glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_shard_configs_load(path):
    cfg, _ = load_config(path, schema=ShardConfig)
    assert cfg.input.layout in path.stem or cfg.input.layout == "generic"


def test_dry_run_counts_inputs_and_writes_nothing(corpus, tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(
        f"input:\n  root: {corpus}\n  annotations: {corpus / 'labels.csv'}\noutput:\n  dir: {tmp_path}/o\n"
    )
    assert main([str(config), "--dry-run"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["inputs"] == {"train": 2, "val": 1, "test": 1}
    assert report["motion_backend"]["name"] == "landmarks" and not (tmp_path / "o").exists()


@pytest.mark.slow
@pytest.mark.slurm
@pytest.mark.skipif(shutil.which("sbatch") is None, reason="needs a running Slurm (sbatch on PATH)")
def test_slurm_array_job_and_merge(corpus, sharded, tmp_path):
    """slurm/shard.sh on a real Slurm: two array tasks and the dependent merge job give the single-run result."""
    _, single = sharded
    out = tmp_path / "out"
    config = tmp_path / "slurm.yaml"
    config.write_text(
        f"input:\n  root: {corpus}\n  annotations: {corpus / 'labels.csv'}\noutput:\n  dir: {out}\n"
        "  shard_max_clips: 2\nclip:\n  max_seconds: 6.5\n"
    )
    env = dict(os.environ, SHARD_CPUS="1", SHARD_LOG_DIR=str(tmp_path / "logs"))
    repo = Path(__file__).resolve().parents[2]
    submitted = subprocess.run(
        ["bash", "slurm/shard.sh", str(config), "2"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert submitted.returncode == 0, submitted.stderr
    deadline = time.monotonic() + 900  # the local cluster may be busy with other jobs
    while not (out / "stats.json").is_file() and time.monotonic() < deadline:
        time.sleep(2)
    time.sleep(1)  # stats.json is the merge's last write; let the job finish
    merged, one = (json.loads((d / "stats.json").read_text()) for d in (out, single))
    assert merged["num_frames"] == one["num_frames"]
    np.testing.assert_allclose(merged["mean"], one["mean"], rtol=1e-9, atol=1e-12)
    assert sorted(r["key"] for r in read_jsonl(out / "manifest.jsonl")) == sorted(
        r["key"] for r in read_jsonl(single / "manifest.jsonl")
    )
