"""`evaluation.run` on a demo-corpus split: ground truth against degraded copies.

Two 1.6 s demo-corpus clips (data_prep.demo_corpus: a real face photo animated with speech) are the ground truth;
each "generated" set is a re-encoded copy with one degradation (evaluation.degrade):
    copy      unchanged frames and audio (the baseline)
    blur      Gaussian blur, sigma 3 px                  -> FID up, F-SIM down
    shifted   audio delayed by 10 frames (400 ms)        -> frames untouched: FID / F-SIM unchanged
    frozen    the first frame repeated                   -> head-pose spread and motion jerk down to ~0
    jitter    each frame translated by up to 6 px        -> motion jerk and frame acceleration up
Sync-C/D, FVD and motion-space sync (ALSE) need weights that cannot ship here: without them they are reported as
skipped with the path; with random-init weights files the full path runs (numbers meaningless, so only their
presence is checked).
Frames are subsampled (4 per clip for FID, 3 for F-SIM) to keep the test fast on two busy cores.
"""

import json
from importlib import metadata

import pytest
import torch
from omegaconf import OmegaConf

from data_prep.demo_corpus import build_corpus
from evaluation.config import EvalConfig
from evaluation.degrade import DEGRADATIONS, make_degraded_split
from evaluation.i3d import InceptionI3d
from evaluation.run import evaluate, main
from evaluation.syncnet import SyncNet
from moda_train.core.config_loader import CONFIGS_ROOT, load_config
from moda_train.experiment import load_experiment
from moda_train.lit.alse_module import ALSELightningModule

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    videos = build_corpus(root / "gt", num_videos=2, num_speakers=2, seconds=1.6, workers=1, progress=False)
    make_degraded_split(videos, root, list(DEGRADATIONS), seed=0)
    return root


def _config(bench, name: str, *overrides: str) -> EvalConfig:
    base = [
        f"split={bench / 'split.csv'}",
        f"generated_dir={bench / name}",
        f"out_dir={bench / 'out' / name}",
        "metrics=[fid,fvd,sync,motion_sync,fsim,diversity,smoothness]",
        "fid.frames_per_video=4",
        "fsim.frames_per_video=3",
        "threads=1",
        f"fvd.weights={bench / 'no-such-i3d.pt'}",
        f"sync.weights={bench / 'no-such-syncnet.model'}",
        f"motion_sync.checkpoint={bench / 'no-such-alse.ckpt'}",
    ]
    cfg, _ = load_config(None, base + list(overrides), schema=EvalConfig)
    return cfg


@pytest.fixture(scope="module")
def reports(bench):
    return {
        name: evaluate(_config(bench, name), progress=False)
        for name in ("copy", "blur", "shifted", "frozen", "jitter")
    }


def _value(report: dict, metric: str) -> float:
    entry = report["metrics"][metric]
    assert entry["status"] == "ok", (metric, entry["status"])
    return entry["value"]


def test_report_files_and_protocol(bench, reports):
    out = bench / "out" / "copy"
    stored = json.loads((out / "metrics.json").read_text())
    assert stored["metrics"] == reports["copy"]["metrics"]
    markdown = (out / "report.md").read_text()
    assert markdown.startswith(f"# Evaluation of {bench / 'copy'} on {bench / 'split.csv'} (2 clips)\n")
    assert "| metric | value | ground truth | better |" in markdown
    truth = stored["metrics"]["pose_spread"]["ground_truth"]
    assert f"| pose_spread | {stored['metrics']['pose_spread']['value']:.4g} | {truth:.4g} |" in markdown
    assert "| clip | frames | " in markdown and "| spk01_000 | " in markdown and "gt_pose_spread" in markdown
    assert "- fid: protocol clean-fid-legacy-tf" in markdown
    assert (out / "per_video.png").stat().st_size > 0
    counts = stored["protocol"]["counts"]
    assert counts["clips evaluated"] == 2 and counts["FID frames per set"] == 8 and counts["F-SIM frames"] == 6
    assert len(stored["protocol"]["weights"]["inception"]["sha256"]) == 64
    assert set(stored["per_video"]) == {"spk00_000", "spk01_000"}
    assert stored["versions"]["torch"] == metadata.version("torch")


def test_missing_weights_are_skipped_with_the_path(bench, reports):
    metrics = reports["copy"]["metrics"]
    assert metrics["fvd"]["value"] is None
    assert metrics["fvd"]["status"] == f"skipped: weights not found at {bench / 'no-such-i3d.pt'} " + (
        "(set it in the config or with MODA_I3D_PATH)"
    )
    for name in ("sync_c", "sync_d", "av_offset_abs"):
        assert metrics[name]["value"] is None and "no-such-syncnet.model" in metrics[name]["status"]
    for name in ("motion_sync_c", "motion_sync_d", "motion_av_offset_abs"):
        assert metrics[name]["value"] is None and "no-such-alse.ckpt" in metrics[name]["status"]
    assert metrics["sample_diversity_pose"]["status"].startswith("skipped: no clip has >= 3 seed samples")


def test_blur_raises_fid_and_lowers_fsim(reports):
    assert _value(reports["blur"], "fid") > 2 * _value(reports["copy"], "fid") + 1.0
    assert _value(reports["blur"], "fsim") < _value(reports["copy"], "fsim")


def test_audio_shift_leaves_frame_metrics_unchanged(reports):
    for metric in ("fid", "fsim", "pose_spread", "motion_jerk_pose", "frame_acceleration"):
        assert _value(reports["shifted"], metric) == pytest.approx(_value(reports["copy"], metric), rel=1e-6)


def test_ground_truth_values_are_the_ground_truths(reports):
    # The same ground truth in every report; a copy of it scores about what it scores.
    for metric in ("pose_spread", "motion_jerk_pose", "motion_jerk_expression", "frame_acceleration"):
        truths = {name: r["metrics"][metric]["ground_truth"] for name, r in reports.items()}
        assert len(set(truths.values())) == 1, (metric, truths)
        assert _value(reports["copy"], metric) == pytest.approx(truths["copy"], rel=0.15), metric
    assert "ground_truth" not in reports["copy"]["metrics"]["fid"]  # a set metric has no ground-truth value
    assert reports["frozen"]["metrics"]["pose_spread"]["ground_truth"] > 4 * _value(
        reports["frozen"], "pose_spread"
    )


def test_small_sets_carry_a_warning(reports):
    fid = reports["copy"]["metrics"]["fid"]
    assert fid["protocol"] == "clean-fid-legacy-tf"
    assert fid["warning"].startswith("only 8 frames per set for 2048-d features")


def test_frozen_head_has_no_spread_and_no_jerk(reports):
    assert _value(reports["copy"], "pose_spread") > 0.3
    # Not exactly 0: the repeated frame is re-encoded (x264) and FaceMesh sees the small coding differences.
    assert _value(reports["frozen"], "pose_spread") < 0.25 * _value(reports["copy"], "pose_spread")
    assert _value(reports["frozen"], "motion_jerk_pose") < _value(reports["copy"], "motion_jerk_pose")
    assert _value(reports["frozen"], "frame_acceleration") < _value(reports["copy"], "frame_acceleration")


def test_jitter_is_less_smooth(reports):
    for metric in ("motion_jerk_pose", "frame_acceleration"):
        assert _value(reports["jitter"], metric) > 1.5 * _value(reports["copy"], metric), metric


def test_rerun_uses_the_cache_and_gives_identical_numbers(bench, reports):
    cache = bench / "out" / "copy" / "cache"
    stamps = {p.name: p.stat().st_mtime_ns for p in cache.iterdir()}
    again = evaluate(_config(bench, "copy"), progress=False)
    assert again["metrics"] == reports["copy"]["metrics"]
    assert {p.name: p.stat().st_mtime_ns for p in cache.iterdir()} == stamps


def test_worker_processes_give_identical_numbers(bench, reports):
    cfg = _config(
        bench, "jitter", f"out_dir={bench / 'out' / 'jitter-workers'}", "metrics=[fsim,smoothness]", "workers=2"
    )
    parallel = evaluate(cfg, progress=False)
    for metric in ("fsim", "motion_jerk_expression", "motion_jerk_pose", "frame_acceleration"):
        assert parallel["metrics"][metric] == reports["jitter"]["metrics"][metric], metric


def _random_alse_checkpoint(path):
    # An untrained tiny expert saved the way Lightning saves one (hyper-parameters + state dict).
    _, tree = load_experiment(CONFIGS_ROOT / "experiments" / "alse_tiny_cpu.yaml")
    config = OmegaConf.to_container(tree)
    module = ALSELightningModule(config)
    torch.save({"hyper_parameters": {"config": config}, "state_dict": module.state_dict()}, path)


def test_random_init_weights_run_sync_and_fvd(bench):
    torch.manual_seed(0)
    torch.save(SyncNet().state_dict(), bench / "syncnet.model")
    torch.save(InceptionI3d().state_dict(), bench / "i3d.pt")
    _random_alse_checkpoint(bench / "alse.ckpt")
    cfg = _config(
        bench,
        "shifted",
        f"out_dir={bench / 'out' / 'random-weights'}",
        "metrics=[sync,fvd,motion_sync]",
        f"motion_sync.checkpoint={bench / 'alse.ckpt'}",
        "max_frames=16",
        "sync.min_track=10",
        f"sync.weights={bench / 'syncnet.model'}",
        f"fvd.weights={bench / 'i3d.pt'}",
    )
    report = evaluate(cfg, progress=False)
    assert report["metrics"]["fvd"]["status"] == "ok" and report["metrics"]["fvd"]["value"] >= 0
    assert report["protocol"]["counts"]["FVD clips per set"] == 2
    assert report["protocol"]["counts"]["SyncNet windows"] == 2 * 11  # 16 tracked frames per video
    assert report["protocol"]["fvd"] == {"protocol": "stylegan-v", "clip_frames": 16, "seed": 0}
    sync = report["protocol"]["sync"]
    assert sync["protocol"] == "syncnet_python" and sync["detector"].startswith("mediapipe face_detection")
    assert any("S3FD" in d for d in sync["differences from syncnet_python"])
    # Random weights say nothing about sync quality (tests/evaluation/test_sync.py uses a meaningful network):
    # here only that every clip and its ground truth were tracked and scored.
    for row in report["per_video"].values():
        assert {"sync_c", "gt_sync_c", "av_offset", "gt_av_offset", "motion_sync_c", "gt_motion_sync_c"} <= set(
            row
        )
    for metric in ("sync_c", "sync_d", "av_offset_abs", "motion_sync_c"):
        assert "ground_truth" in report["metrics"][metric], metric
    assert len(report["protocol"]["weights"]["syncnet"]["sha256"]) == 64
    assert report["protocol"]["weights"]["alse"]["audio_backend"] == "logmel"
    # That checkpoint was saved without its shards' backends: scored, with the warning on every motion_sync metric.
    assert report["protocol"]["weights"]["alse"]["motion_backend"] is None
    assert "cannot check that it matches 'landmarks'" in report["metrics"]["motion_sync_c"]["warning"]
    assert report["protocol"]["counts"]["ALSE windows"] > 0


def test_cli_writes_the_report_and_rejects_bad_keys(bench, capsys):
    cfg = bench / "eval.yaml"
    cfg.write_text(f"split: {bench / 'split.csv'}\ngenerated_dir: {bench / 'copy'}\nmetrics: [smoothness]\n")
    out = bench / "out" / "cli"
    assert main([str(cfg), f"out_dir={out}"]) == 0
    assert "frame_acceleration" in capsys.readouterr().out and (out / "metrics.json").is_file()
    assert main([str(cfg), "fid.frame=3"]) == 2
    assert "fid.frame" in capsys.readouterr().err
