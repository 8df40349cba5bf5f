"""Sync-C/D's syncnet_python protocol with the S3FD detector, end to end on a demo-corpus video.

The S3FD weights file is in syncnet_python's released layout, random except its last class layer, fitted to find
one known box on this video's frames (tests/perception/s3fd_helpers.py): so the test knows where every detection
must be. The SyncNet is random: its scores mean nothing, but 31 mean distances per clip that equal those of
hand-made crops of the known box show that the protocol cropped exactly there.
"""

import shutil

import numpy as np
import pytest
import torch

from data_prep.demo_corpus import build_corpus
from evaluation.config import EvalConfig
from evaluation.run import check_metrics, evaluate
from evaluation.sync import (
    SyncScorer,
    _ffmpeg,
    chosen_detector,
    crop_video_round_trip,
    reference_audio,
    reference_frames,
    score_video,
)
from evaluation.syncnet import SyncNet, load_syncnet
from moda_train.core.config_loader import load_config
from moda_train.perception.face_track import syncnet_crop
from moda_train.perception.s3fd import S3FDDetector, load_s3fd
from tests.perception.s3fd_helpers import fitted_box, fitted_s3fd, save_released

FRAMES, SIDE = 24, 160


@pytest.fixture(scope="module")
def syncnet_file(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("syncnet") / "syncnet.model"
    torch.save(SyncNet().state_dict(), path)
    return path


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    root = tmp_path_factory.mktemp("s3fd")
    (video,) = build_corpus(root / "gt", num_videos=1, num_speakers=1, seconds=1.2, workers=1, progress=False)
    # 160 px frames (a 40 px network input at S3FD's 0.25 scale): a quarter of the demo's 320 px cost.
    small = root / "clip.mp4"
    _ffmpeg("-i", str(video), "-vf", f"scale={SIDE}:{SIDE}", "-c:a", "copy", str(small))
    frames = reference_frames(small, FRAMES)
    save_released(fitted_s3fd(np.ascontiguousarray(frames[..., ::-1])), root / "sfd_face.pth")
    (root / "generated").mkdir()
    shutil.copy(small, root / "generated" / "clip.mp4")
    (root / "split.csv").write_text(f"key,video\nclip,{small}\n")
    return root


def _config(root, syncnet, s3fd, *overrides: str) -> EvalConfig:
    base = [
        f"split={root / 'split.csv'}",
        f"generated_dir={root / 'generated'}",
        f"out_dir={root / 'out'}",
        "metrics=[sync]",
        "ground_truth=false",
        f"max_frames={FRAMES}",
        f"sync.min_track={FRAMES - 4}",
        f"sync.weights={syncnet}",
        f"sync.s3fd_weights={s3fd}",
    ]
    cfg, _ = load_config(None, base + list(overrides), schema=EvalConfig)
    return cfg


def test_auto_uses_s3fd_only_when_its_weights_are_found(tmp_path, monkeypatch):
    monkeypatch.delenv("MODA_S3FD_PATH", raising=False)
    (tmp_path / "sfd_face.pth").write_bytes(b"")
    assert chosen_detector("auto", str(tmp_path / "sfd_face.pth")) == "s3fd"
    assert chosen_detector("auto", str(tmp_path / "missing.pth")) == "mediapipe"
    monkeypatch.setenv("MODA_S3FD_PATH", str(tmp_path / "sfd_face.pth"))
    assert chosen_detector("auto", "") == "s3fd"
    assert chosen_detector("mediapipe", "") == "mediapipe"


def test_s3fd_weights_missing_or_wrong(tmp_path, syncnet_file):
    missing = tmp_path / "no.pth"
    status, _ = check_metrics(_config(tmp_path, syncnet_file, missing, "sync.detector=s3fd"))
    assert status["sync"] == f"weights not found at {missing} (set it in the config or with MODA_S3FD_PATH)"
    status, _ = check_metrics(_config(tmp_path, syncnet_file, missing, "sync.protocol=whole_frame"))
    assert status["sync"] == "ok"  # whole_frame detects nothing, so it needs no S3FD
    torch.save({"conv1_1.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="weights do not fit S3FDNet"):  # auto: found, so it must fit
        check_metrics(_config(tmp_path, syncnet_file, tmp_path / "other.pth"))


@pytest.mark.slow
def test_s3fd_protocol_crops_where_the_detector_finds_the_face(bench, syncnet_file):
    video = bench / "clip.mp4"
    detector = S3FDDetector(load_s3fd(bench / "sfd_face.pth"))
    frames = reference_frames(video, FRAMES)
    faces = detector.detect(np.ascontiguousarray(frames[..., ::-1]))
    box = fitted_box(SIDE, SIDE)
    assert all(len(f) == 1 for f in faces)  # exactly one face on every frame, at the fitted prior, confident
    np.testing.assert_allclose(np.concatenate(faces)[:, :4], np.tile(box, (FRAMES, 1)), atol=1e-4)
    assert np.concatenate(faces)[:, 4].min() > 0.99

    scorer = SyncScorer(load_syncnet(syncnet_file), vshift=15)
    result, info = score_video(scorer, video, video, "syncnet_python", FRAMES, detector.boxes, FRAMES - 4, 100)
    assert info == {"tracks": 1, "track_frames": FRAMES, "track_start": 0}
    # By hand: a constant box, so the median filter leaves centre (80, 80) and half side 64 on every frame.
    centre, half = (box[:2] + box[2:]) / 2, (box[2] - box[0]) / 2
    crops = np.stack([syncnet_crop(f, *centre, half) for f in frames])
    expected = scorer.score_crops(crop_video_round_trip(crops), reference_audio(video)[: 640 * FRAMES])
    np.testing.assert_allclose(result.mdist, expected.mdist, rtol=1e-6)
    assert result.offset == expected.offset


@pytest.mark.slow
def test_metrics_json_records_the_s3fd_detector(bench, syncnet_file):
    report = evaluate(_config(bench, syncnet_file, bench / "sfd_face.pth", "sync.detector=auto"), progress=False)
    sync = report["protocol"]["sync"]
    assert sync["detector"].startswith("s3fd (syncnet_python's sfd_face.pth; frames scaled by 0.25")
    assert sync["differences from syncnet_python"][0].startswith("faces detected by S3FD")
    assert len(report["protocol"]["weights"]["s3fd"]["sha256"]) == 64
    assert report["metrics"]["sync_c"]["status"] == "ok"
    assert report["protocol"]["counts"]["SyncNet windows"] == FRAMES - 5

    overrides = ("sync.detector=mediapipe", f"out_dir={bench / 'out-mp'}")
    other = evaluate(_config(bench, syncnet_file, bench / "sfd_face.pth", *overrides), progress=False)
    assert other["protocol"]["sync"]["detector"].startswith("mediapipe")
    assert "s3fd" not in other["protocol"]["weights"]
    assert any("not S3FD" in d for d in other["protocol"]["sync"]["differences from syncnet_python"])
