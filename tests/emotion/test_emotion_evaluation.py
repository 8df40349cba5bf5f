"""Emotion accuracy in the evaluation job: per-video records -> metrics.json entry with confusion matrix -> the
report; the number drops when the clips are scored as generated for the wrong emotion; skipped without weights."""

from __future__ import annotations

import pytest

from evaluation.aggregate import aggregate
from evaluation.config import EmotionConfig, EvalConfig
from evaluation.per_video import VideoRecord, emotion_values
from evaluation.report import markdown_table
from evaluation.run import check_metrics
from evaluation.split import load_split
from moda_train.core.motion_layout import EMOTIONS
from moda_train.lit.emotion_module import load_classifier
from tests.emotion.test_emotion_classifier import held_out_clips


def _config(tmp_path, *, checkpoint="") -> EvalConfig:
    return EvalConfig(
        split=str(tmp_path / "split.csv"), generated_dir=str(tmp_path), metrics=["emotion"],
        emotion=EmotionConfig(checkpoint=checkpoint),
    )  # fmt: skip


def _report(cfg, records):
    metrics = aggregate(cfg, records, {"emotion": "ok"})
    report = {
        "title": {"method": "m", "split": "s", "clips": len(records)}, "metrics": metrics, "per_video": {},
        "failures": {}, "protocol": {"counts": {}, "weights": {}},
    }  # fmt: skip
    return metrics["emotion_accuracy"], markdown_table(report)


@pytest.mark.slow
def test_emotion_accuracy_in_metrics_and_report(emotion_checkpoint, emotion_shards, tmp_path):
    classifier = load_classifier(emotion_checkpoint)
    clips = held_out_clips(emotion_shards)
    cfg = _config(tmp_path, checkpoint=str(emotion_checkpoint))

    def records(shift: int) -> list[VideoRecord]:
        # Real held-out motion of emotion A, recorded as generated for A + shift; the ground truth shows A.
        out = []
        for index, (motion, label) in enumerate(clips):
            values = {"emotion": emotion_values(classifier, motion, (label + shift) % len(EMOTIONS))}
            values["gt"] = {"emotion": emotion_values(classifier, motion, label)}
            out.append(VideoRecord(f"clip{index}", {"frames": len(motion), **values}))
        return out

    right, markdown = _report(cfg, records(0))
    wrong, _ = _report(cfg, records(1))
    assert right["status"] == "ok" and right["videos"] == len(clips)
    assert right["value"] >= 0.6 and right["ground_truth"] == right["value"]
    assert wrong["value"] < right["value"] - 0.4
    assert wrong["ground_truth"] == right["ground_truth"]  # the ground truth did not change
    assert sum(map(sum, right["confusion"])) == len(clips) and right["classes"] == list(EMOTIONS)
    assert "| emotion_accuracy |" in markdown and "Emotion confusion (rows: generated for" in markdown


def test_emotion_without_target_is_skipped(tmp_path):
    record = VideoRecord("a", {"frames": 10, "emotion": {"target": None, "predicted": 3}})
    entry = aggregate(_config(tmp_path), [record], {"emotion": "ok"})["emotion_accuracy"]
    assert entry["value"] is None and entry["status"].startswith("skipped: no clip has a target emotion")


def test_missing_classifier_weights_skip_the_metric(tmp_path):
    status, _ = check_metrics(_config(tmp_path, checkpoint=str(tmp_path / "no-such-emotion.ckpt")))
    assert status["emotion"].startswith("weights not found at ") and "MODA_EMOTION_PATH" in status["emotion"]


def test_split_emotion_column(tmp_path):
    (tmp_path / "a.mp4").write_bytes(b"")
    (tmp_path / "split.csv").write_text("key,video,emotion\na,a.mp4,Happiness\nb,a.mp4,6\nc,a.mp4,\n")
    assert [c.emotion for c in load_split(tmp_path / "split.csv")] == [EMOTIONS.index("happiness"), 6, None]
    (tmp_path / "split.csv").write_text("key,video,emotion\na,a.mp4,joy\n")
    with pytest.raises(ValueError, match="row 1: unknown emotion 'joy'"):
        load_split(tmp_path / "split.csv")
    with pytest.raises(ValueError, match="emotion.generated_for: unknown emotion 'glee'"):
        EvalConfig(split="x", generated_dir="y", emotion=EmotionConfig(generated_for="glee"))


def test_manifest_emotion_is_the_split_emotion(tmp_path):
    (tmp_path / "a.mp4").write_bytes(b"")
    rows = [
        '{"key": "a", "source": "a.mp4", "split": "test", "emotion": 6, "status": "ok"}',
        '{"key": "b", "source": "a.mp4", "split": "test", "emotion": 8, "status": "ok"}',
    ]
    (tmp_path / "manifest.jsonl").write_text("\n".join(rows) + "\n")
    assert [c.emotion for c in load_split(tmp_path / "manifest.jsonl", "test")] == [6, None]  # 8: unknown
