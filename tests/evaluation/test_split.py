"""Benchmark split files: CSV, JSONL and data_prep manifests; every problem is named."""

import json

import pytest

from evaluation.config import EvalConfig
from evaluation.split import load_split
from moda_train.core.config_loader import ConfigError, load_config


@pytest.fixture()
def videos(tmp_path):
    for name in ("a.mp4", "b.mp4", "b.wav"):
        (tmp_path / name).write_bytes(b"x")
    return tmp_path


def test_csv_with_relative_paths_and_optional_columns(videos):
    split = videos / "split.csv"
    split.write_text("key,video,audio,reference_frame\nclip_a,a.mp4,,\nclip-b,b.mp4,b.wav,7\n")
    clips = load_split(split)
    assert [c.key for c in clips] == ["clip_a", "clip-b"]
    assert clips[0].video == videos / "a.mp4" and clips[0].audio is None and clips[0].reference_frame == 0
    assert clips[1].audio == videos / "b.wav" and clips[1].reference_frame == 7


def test_jsonl_and_manifest(videos):
    split = videos / "split.jsonl"
    split.write_text(json.dumps({"key": "x", "video": str(videos / "a.mp4")}) + "\n")
    assert load_split(split)[0].video == videos / "a.mp4"
    manifest = videos / "manifest.jsonl"
    rows = [
        {
            "key": "t1",
            "shard": "test-000000.tar",
            "source": "a.mp4",
            "split": "test",
            "frames": 50,
            "status": "ok",
        },
        {"key": "v1", "shard": "val-000000.tar", "source": "b.mp4", "split": "val", "frames": 50, "status": "ok"},
        {"key": "t2", "shard": "", "source": "b.mp4", "split": "test", "frames": 0, "status": "failed"},
    ]
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert [c.key for c in load_split(manifest, "test")] == ["t1"]
    assert [c.key for c in load_split(manifest, "val")] == ["v1"]


def test_every_problem_is_reported_at_once(videos):
    split = videos / "split.csv"
    split.write_text("key,video,reference_frame\nbad key,a.mp4,0\nok,missing.mp4,0\nok,a.mp4,x\n")
    with pytest.raises(ValueError) as err:
        load_split(split)
    message = str(err.value)
    assert "'bad key'" in message and "missing.mp4" in message and "duplicate key 'ok'" in message
    assert "reference_frame 'x'" in message


def test_unknown_format_and_missing_file(tmp_path):
    with pytest.raises(ValueError, match="split file not found"):
        load_split(tmp_path / "nope.csv")
    (tmp_path / "s.txt").write_text("x")
    with pytest.raises(ValueError, match=r"\.csv or \.jsonl"):
        load_split(tmp_path / "s.txt")


def test_config_checks_name_the_key(tmp_path):
    cfg = tmp_path / "eval.yaml"
    cfg.write_text("split: s.csv\ngenerated_dir: g\n")
    typed, _ = load_config(cfg, ["fvd.clip_frames=16"], schema=EvalConfig)
    assert typed.fvd.clip_frames == 16
    with pytest.raises(ConfigError, match="I3D needs at least 10"):
        load_config(cfg, ["fvd.clip_frames=8"], schema=EvalConfig)
    with pytest.raises(ConfigError, match="unknown fidd"):
        load_config(cfg, ["metrics=[fidd]"], schema=EvalConfig)
    with pytest.raises(ConfigError, match="fid.frame_per_video"):
        load_config(cfg, ["fid.frame_per_video=3"], schema=EvalConfig)
    (tmp_path / "empty.yaml").write_text("workers: 1\n")
    with pytest.raises(
        ConfigError, match=r"split is required .*; nothing to score: set checkpoint= .* or generated_dir="
    ):
        load_config(tmp_path / "empty.yaml", [], schema=EvalConfig)


def test_shipped_eval_configs_load():
    from moda_train.core.config_loader import CONFIGS_ROOT

    for path in sorted((CONFIGS_ROOT / "eval").glob("*.yaml")):
        load_config(path, ["split=s.csv", "generated_dir=g"], schema=EvalConfig)


def test_manifest_sources_resolve_against_the_corpus_root(tmp_path):
    manifest = tmp_path / "shards" / "manifest.jsonl"
    manifest.parent.mkdir()
    manifest.write_text('{"key": "t1", "source": "spk/a.mp4", "split": "test", "status": "ok"}\n')
    (tmp_path / "videos" / "spk").mkdir(parents=True)
    (tmp_path / "videos" / "spk" / "a.mp4").write_bytes(b"")  # only its path matters here
    (clip,) = load_split(manifest, "test", video_root=tmp_path / "videos")
    assert clip.video == tmp_path / "videos" / "spk" / "a.mp4"
