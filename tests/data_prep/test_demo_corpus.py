"""The demo corpus: real files that decode, a mouth that moves with the speech, a head that sways, resumable."""

from __future__ import annotations

import csv
import shutil

import av
import cv2
import numpy as np
import pytest

from data_prep.demo_corpus import build_corpus, main
from moda_train.core.motion_layout import EMOTIONS, LIP_DIMS, NUM_KEYPOINTS
from moda_train.perception.audio import load_audio
from moda_train.perception.motion import get_motion_extractor
from moda_train.perception.motion.landmarks import INNER_LIP_KEYPOINTS

SECONDS = 3.0
FRAMES = 75


def decode(path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    paths = build_corpus(out, num_videos=3, num_speakers=3, seconds=SECONDS, seed=0, workers=1, progress=False)
    return out, paths


def test_files_and_labels(corpus):
    out, paths = corpus
    assert [p.name for p in paths] == ["spk00_000.mp4", "spk01_000.mp4", "spk02_000.mp4"]
    with open(out / "labels.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["path", "speaker", "emotion", "split"]
    assert [row["path"] for row in rows] == [p.name for p in paths]
    assert len({row["speaker"] for row in rows}) == 3
    # every split gets its own speaker, so the quickstart always has unseen val and test speakers
    assert [row["split"] for row in rows] == ["train", "val", "test"]
    assert all(row["emotion"] in EMOTIONS or row["emotion"] == "" for row in rows)
    assert (out / "corpus.json").is_file()
    assert not list(out.glob("*.partial"))


def test_videos_decode_at_25_fps_with_16k_speech(corpus):
    _, paths = corpus
    for path in paths:
        with av.open(str(path)) as container:
            video = container.streams.video[0]
            assert video.average_rate == 25 and (video.width, video.height) == (320, 320)
            assert container.streams.audio[0].codec_context.sample_rate == 16000
        assert len(decode(path)) == FRAMES
        wave = load_audio(path)
        assert abs(len(wave) - SECONDS * 16000) <= 2 and np.abs(wave).max() > 0.05
        envelope = np.load(path.with_suffix(".envelope.npy"))
        assert envelope.shape == (FRAMES,) and envelope.min() >= 0 and envelope.max() == pytest.approx(1.0)
        assert np.load(path.with_suffix(".sway.npy")).shape == (FRAMES, 3)


def test_speakers_differ_and_videos_say_different_things(corpus):
    _, paths = corpus
    envelopes = [np.load(p.with_suffix(".envelope.npy")) for p in paths]
    assert np.corrcoef(envelopes[0], envelopes[1])[0, 1] < 0.8
    first_frames = [decode(p)[0].astype(np.float32) for p in paths]
    assert np.abs(first_frames[0] - first_frames[1]).mean() > 5  # mirrored, tinted, swayed differently


def test_extracted_motion_follows_speech_and_sway(corpus):
    """The issue's acceptance check: the lip dimensions move with the speech envelope, the pose with the sway."""
    _, paths = corpus
    extractor = get_motion_extractor("landmarks")
    for path in paths:
        frames = np.stack([cv2.resize(f, (256, 256), interpolation=cv2.INTER_AREA) for f in decode(path)])
        sequence = extractor.extract(frames)
        envelope = np.load(path.with_suffix(".envelope.npy"))
        sway = np.load(path.with_suffix(".sway.npy"))
        canonical = (sequence.identity + sequence.motion[:, :63]).reshape(-1, NUM_KEYPOINTS, 3)
        upper, lower = INNER_LIP_KEYPOINTS[0][1], INNER_LIP_KEYPOINTS[1][1]
        gap = np.linalg.norm(canonical[:, lower] - canonical[:, upper], axis=1)
        lips = sequence.motion[:, list(LIP_DIMS)]
        lips = lips - lips.mean(0)
        first_component = lips @ np.linalg.svd(lips, full_matrices=False)[2][0]
        first_component *= np.sign(np.corrcoef(first_component, gap)[0, 1])
        r_gap = np.corrcoef(gap, envelope)[0, 1]
        r_pc = np.corrcoef(first_component, envelope)[0, 1]
        r_roll = np.corrcoef(sequence.motion[:, 69], sway[:, 0])[0, 1]
        r_tx = np.corrcoef(sequence.motion[:, 64], sway[:, 1])[0, 1]
        print(
            f"{path.name}: lip gap~envelope r={r_gap:.3f}, lip PC1 r={r_pc:.3f}, "
            f"roll r={r_roll:.3f}, tx r={r_tx:.3f}"
        )
        assert sequence.valid.all()
        assert r_gap > 0.7 and r_pc > 0.7
        assert r_roll > 0.9 and r_tx > 0.6


def test_resumes_and_is_deterministic(corpus, tmp_path):
    out, paths = corpus
    stamps = {p: p.stat().st_mtime_ns for p in paths}
    build_corpus(out, num_videos=3, num_speakers=3, seconds=SECONDS, seed=0, workers=1, progress=False)
    assert {p: p.stat().st_mtime_ns for p in paths} == stamps  # nothing rebuilt
    # An interrupted build leaves a partial file and no mp4; the next run redoes that video only, identically.
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    (copy / "spk01_000.mp4").unlink()
    (copy / "spk01_000.mp4.partial").write_bytes(b"half a video")
    build_corpus(copy, num_videos=3, num_speakers=3, seconds=SECONDS, seed=0, workers=1, progress=False)
    assert (copy / "spk01_000.mp4").stat().st_size > 10_000
    np.testing.assert_array_equal(np.load(copy / "spk01_000.sway.npy"), np.load(out / "spk01_000.sway.npy"))
    np.testing.assert_array_equal(decode(copy / "spk01_000.mp4"), decode(out / "spk01_000.mp4"))
    assert (copy / "labels.csv").read_text() == (out / "labels.csv").read_text()


def test_fallback_voice_without_espeak(tmp_path):
    (path,) = build_corpus(
        tmp_path, num_videos=1, seconds=2.0, seed=1, workers=1, use_espeak=False, progress=False
    )
    envelope = np.load(path.with_suffix(".envelope.npy"))
    assert envelope.std() > 0.15  # syllables and pauses, not a flat tone
    assert "built-in fallback" in (tmp_path / "corpus.json").read_text()


@pytest.mark.slow
def test_cli_with_worker_processes(tmp_path, capsys):
    main(["--out", str(tmp_path), "--num-videos", "2", "--num-speakers", "2", "--seconds", "1", "--workers", "2"])
    assert len(list(tmp_path.glob("*.mp4"))) == 2
    assert "2 videos in" in capsys.readouterr().out


def test_bad_arguments_are_named(tmp_path):
    with pytest.raises(ValueError, match="--num-videos"):
        build_corpus(tmp_path, num_videos=0)
