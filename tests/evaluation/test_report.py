"""The report explains itself: title, ground-truth column, warnings, per-video table, plot (no networks)."""

import numpy as np
import pytest

from evaluation.aggregate import aggregate, per_video_table
from evaluation.config import EvalConfig
from evaluation.per_video import VideoRecord
from evaluation.report import markdown_table, write_report
from evaluation.run import _title


def _record(key: str, sync_c: float, gt_sync_c: float, offset: int, rng: np.random.Generator) -> VideoRecord:
    sync = {"sync_c": sync_c, "sync_d": 8.0 - sync_c, "offset": offset}
    gt_sync = {"sync_c": gt_sync_c, "sync_d": 8.0 - gt_sync_c, "offset": 0}
    return VideoRecord(
        key,
        {"frames": 50, "sync": sync, "diversity": {"pose_spread": 1.0}, "gt": {"sync": gt_sync}},
        {"fid_real": rng.normal(size=(5, 2048)), "fid_fake": rng.normal(size=(5, 2048)) + 0.1},
    )


@pytest.fixture()
def report():
    cfg = EvalConfig(
        split="bench/hdtf_test.csv", generated_dir="samples/hdtf", name="MoDA-tiny", metrics=["fid", "sync"]
    )
    cfg.fid.kid = True
    rng = np.random.default_rng(0)
    records = [_record("clipA", 2.0, 7.0, 3, rng), _record("clipB", 4.0, 6.0, -1, rng)]
    records.append(_record("clipC", 0.0, 6.5, 0, rng))
    records[2].values["sync"] = {"error": "no face track of more than 100 frames"}  # not scored: left out
    return {
        "title": _title(cfg, 3),
        "metrics": aggregate(cfg, records, {"fid": "ok", "sync": "ok"}),
        "per_video": per_video_table(records),
        "failures": {},
        "protocol": {"counts": {"clips evaluated": 2}, "weights": {}, "fid": {"protocol": cfg.fid.protocol}},
    }


def test_ground_truth_is_aggregated_beside_the_generated_value(report):
    metrics = report["metrics"]
    assert metrics["sync_c"]["value"] == pytest.approx(3.0) and metrics["sync_c"]["ground_truth"] == pytest.approx(
        6.5
    )
    assert (
        metrics["av_offset_abs"]["value"] == pytest.approx(2.0) and metrics["av_offset_abs"]["ground_truth"] == 0
    )
    assert "ground_truth" not in metrics["fid"]
    assert report["per_video"]["clipA"]["gt_sync_c"] == 7.0
    assert report["per_video"]["clipC"]["sync_error"].startswith("no face track")


def test_small_sets_warn_and_kid_subsets_are_bounded(report):
    metrics = report["metrics"]
    assert metrics["fid"]["warning"].startswith("only 15 frames per set for 2048-d features")
    assert metrics["kid"]["subset_size"] == 15 and "std" not in metrics["kid"]
    assert metrics["kid"]["warning"] == "subset size capped at the 15 samples: one subset, no std"


def test_markdown_names_method_split_and_shows_ground_truth_and_per_video_rows(report, tmp_path):
    text = markdown_table(report)
    assert text.startswith("# Evaluation of MoDA-tiny on bench/hdtf_test.csv (3 clips)\n")
    assert "| sync_c | 3 | 6.5 | higher | ok |" in text
    assert "| clip | frames | sync_c | gt_sync_c | sync_d | gt_sync_d | av_offset | gt_av_offset |" in text
    assert "| clipB | 50 | 4 | 6 | 4 | 2 | -1 | 0 |" in text
    assert "- **fid**: only 15 frames per set" in text
    assert "| clipC | 50 | – | 6.5 |" in text
    paths = write_report(report, tmp_path)
    assert paths["plot"].stat().st_size > 0 and paths["markdown"].read_text() == text
