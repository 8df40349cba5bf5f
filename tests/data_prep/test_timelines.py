"""Ordinary files from downloads and phones: streams that do not start at 0, audio longer than the video, a
stream-copy cut off a keyframe, rotation metadata and anamorphic pixels. Each becomes a clip of the right length
and orientation, with what was unusual recorded in meta.json.

The inputs are made from one upright 4 s clip with the ffmpeg commands that produce these files in the wild.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import av
import numpy as np
import pytest

from data_prep.shard import run
from data_prep.writer import read_jsonl
from moda_train.perception.decode import FrameReader, probe, read_audio

from .conftest import ffmpeg, shard_config, talking_video

SECONDS = 4.0


def build_inputs(root: Path) -> dict[str, Path]:
    base = talking_video(root / "src" / "upright.mp4", seconds=SECONDS)
    videos = root / "videos"
    videos.mkdir()
    # AAC priming after a remux through MPEG-TS: the first video frame lands at 0.064 s.
    ffmpeg("-i", base, "-c:v", "copy", "-c:a", "aac", "-f", "mpegts", root / "src" / "primed.ts")
    ffmpeg("-i", root / "src" / "primed.ts", "-c", "copy", videos / "primed.mp4")
    ffmpeg("-i", base, "-c", "copy", "-output_ts_offset", "10", videos / "offset.mp4")
    # Audio runs 2 s past the video (so the container lasts 6 s).
    ffmpeg(
        "-i", base, "-f", "lavfi", "-i", "sine=f=300:d=6", "-map", "0:v", "-map", "1:a", "-c:v", "copy",
        "-c:a", "aac", videos / "long_audio.mp4",
    )  # fmt: skip
    # A stream-copy cut at 0.6 s: the only keyframe is at 0, so the edit list hides 15 pre-roll frames.
    ffmpeg("-ss", "0.6", "-i", base, "-c", "copy", videos / "cut.mp4")
    # Phone footage: frames stored sideways, the display matrix turns them upright.
    ffmpeg("-i", base, "-vf", "transpose=clock", "-c:a", "copy", root / "src" / "sideways.mp4")
    ffmpeg("-display_rotation", "90", "-i", root / "src" / "sideways.mp4", "-c", "copy", videos / "phone.mp4")
    # Anamorphic: stored at half width with 2:1 pixels.
    ffmpeg("-i", base, "-vf", "scale=128:192,setsar=2", "-c:a", "copy", videos / "anamorphic.mp4")
    return {p.stem: p for p in videos.iterdir()} | {"upright": base}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    return build_inputs(tmp_path_factory.mktemp("timelines"))


def upright_frames(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


@pytest.mark.parametrize(
    "name, start, duration, rotation, sar, skip",
    [
        ("primed", 0.064, SECONDS, 0, 1.0, 0),
        ("offset", 10.0, SECONDS, 0, 1.0, 0),
        ("long_audio", 0.0, SECONDS, 0, 1.0, 0),
        ("cut", 0.0, SECONDS - 0.6, 0, 1.0, 15),
        ("phone", 0.0, SECONDS, 90, 1.0, 0),
        ("anamorphic", 0.0, SECONDS, 0, 2.0, 0),
    ],
)
def test_frames_follow_the_stream_timeline_and_display(inputs, name, start, duration, rotation, sar, skip):
    info = probe(str(inputs[name]))
    assert info.start_s == pytest.approx(start, abs=1e-3) and info.duration_s == pytest.approx(duration)
    assert (info.rotation, info.sample_aspect_ratio, info.discarded_frames) == (rotation, sar, skip)
    assert info.display_size() == (256, 192)
    # Frame k of the file is frame k (+ the cut's pre-roll) of the upright original, as a player shows it.
    truth = upright_frames(inputs["upright"])
    reader = FrameReader(str(inputs[name]), info)
    times = np.array([0.0, 1.0, 2.0])
    expected = truth[skip + np.round(times * 25).astype(int)].astype(int)
    for frames in (next(reader.read(times, 8)), next(reader.read_sparse(times, 8))):
        assert frames.shape == (3, 192, 256, 3)
        tolerance = 6 if sar != 1 else 3  # resampling the squeezed axis blurs edges a little
        assert np.abs(frames.astype(int) - expected).mean() < tolerance
    # Audio on the same timeline: the whole video range is there even when the audio starts before the video.
    wave = read_audio(str(inputs[name]), 0.0, info.duration_s, 16000, origin_s=info.start_s)
    assert wave.size == round(info.duration_s * 16000) and np.abs(wave).max() > 0.1


@pytest.fixture(scope="module")
def sharded(inputs, tmp_path_factory):
    out = tmp_path_factory.mktemp("timelines_out")
    root = inputs["primed"].parent
    cfg = shard_config(root, out, "split.val_fraction=0", "split.test_fraction=0")
    summary = run(cfg, progress=False)
    metas = {}
    for shard in out.glob("train-*.tar"):
        with tarfile.open(shard) as tar:
            for member in tar:
                if member.name.endswith(".meta.json"):
                    meta = json.loads(tar.extractfile(member).read())
                    metas[Path(meta["source"]).stem] = meta
    return summary, metas, read_jsonl(out / "failures.jsonl")


def test_every_unusual_file_becomes_a_clip(sharded):
    summary, metas, failures = sharded
    assert failures == []
    frames = {name: meta["num_frames"] for name, meta in metas.items()}
    assert frames == {"primed": 100, "offset": 100, "long_audio": 100, "cut": 85, "phone": 100, "anamorphic": 100}


def test_meta_records_rotation_aspect_and_trimming(sharded):
    _, metas, _ = sharded
    assert metas["phone"]["rotation"] == 90 and metas["phone"]["source_size"] == [192, 256]
    assert metas["anamorphic"]["sample_aspect_ratio"] == 2.0 and metas["anamorphic"]["source_size"] == [128, 192]
    assert all(meta["display_size"] == [256, 192] for meta in metas.values())
    assert metas["cut"]["discarded_preroll_frames"] == 15
    assert metas["primed"]["video_start_s"] == 0.064 and metas["offset"]["video_start_s"] == 10.0


def test_hdtf_range_from_zero_on_a_late_starting_video(inputs, tmp_path):
    root = inputs["primed"].parent
    listing = tmp_path / "annotion_time.txt"
    # 00:00-00:04.04 runs one frame past the video (annotations are rounded): trimmed, not rejected.
    listing.write_text("primed.mp4 00:00-00:03.6\noffset.mp4 00:00-00:04.04\n")
    cfg = shard_config(
        root, tmp_path / "out", "input.layout=hdtf", f"input.annotations={listing}", "split.val_fraction=0",
        "split.test_fraction=0",
    )  # fmt: skip
    summary = run(cfg, progress=False)
    assert summary["frames"]["train"] == 90 + 100 and summary["failed"] == 0
