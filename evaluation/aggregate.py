"""From per-video records to benchmark numbers: set metrics over all clips, per-video metrics averaged.

Every metric comes out as {"value", "status", "better"}: status is "ok", or "skipped: <reason>" with value None
(weights missing, too few clips, no multi-seed samples); a number is never made up. Metrics a video gives on its
own (Sync-C/D, motion sync, pose spread, smoothness, emotion accuracy) also carry "ground_truth": the same metric
on the ground-truth videos, when `ground_truth` is on. FID and FVD from fewer samples than feature dimensions
carry a "warning", and so does KID when its subset size had to be capped.
"""

from __future__ import annotations

import numpy as np

from evaluation.config import EvalConfig
from evaluation.per_video import MIN_DIVERSITY_SEEDS, VideoRecord
from moda_train.core.motion_layout import EMOTIONS
from moda_train.metrics.emotion import emotion_accuracy

# metric -> (config metric group, which direction is better, one-line definition for the report)
METRICS: dict[str, tuple[str, str, str]] = {
    "fid": ("fid", "lower", "Fréchet distance of InceptionV3 pool features, real vs generated frames"),
    "kid": ("fid", "lower", "KID (unbiased MMD^2, cubic kernel) of the same features"),
    "fvd": ("fvd", "lower", "Fréchet distance of I3D logits of 16-frame clips, covariances / N (StyleGAN-V)"),
    "sync_c": ("sync", "higher", "SyncNet confidence: median - min of the mean distance over offsets"),
    "sync_d": ("sync", "lower", "SyncNet distance at the best offset"),
    "av_offset_abs": ("sync", "lower", "mean |audio-video offset| in frames found by SyncNet"),
    "motion_sync_c": (
        "motion_sync",
        "higher",
        "ALSE confidence on re-extracted lip motion (same formula as Sync-C)",
    ),
    "motion_sync_d": ("motion_sync", "lower", "ALSE distance at the best offset (same formula as Sync-D)"),
    "motion_av_offset_abs": ("motion_sync", "lower", "mean |offset| in frames found by ALSE"),
    "fsim": ("fsim", "higher", "cosine similarity of dlib face descriptors, reference photo vs frames"),
    "pose_spread": ("diversity", "closer to ground truth", "std over time of pitch/yaw/roll (deg), per video"),
    "sample_diversity_expression": ("diversity", "higher", "mean pairwise distance of seed samples, expression"),
    "sample_diversity_pose": ("diversity", "higher", "mean pairwise distance of seed samples, pose"),
    "motion_jerk_expression": ("smoothness", "lower", "mean |2nd time difference| of expression motion"),
    "motion_jerk_pose": ("smoothness", "lower", "mean |2nd time difference| of pose motion"),
    "frame_acceleration": ("smoothness", "lower", "mean |2nd time difference| of pixels (0..255)"),
    "emotion_accuracy": (
        "emotion",
        "higher",
        "share of videos the motion-space emotion classifier assigns to the emotion they were generated for",
    ),
}

# per-video value name -> (path into VideoRecord.values)
PER_VIDEO = {
    "sync_c": ("sync", "sync_c"),
    "sync_d": ("sync", "sync_d"),
    "av_offset": ("sync", "offset"),
    "motion_sync_c": ("motion_sync", "sync_c"),
    "motion_sync_d": ("motion_sync", "sync_d"),
    "motion_av_offset": ("motion_sync", "offset"),
    "fsim": ("fsim", "value"),
    "pose_spread": ("diversity", "pose_spread"),
    "sample_diversity_expression": ("diversity", "sample_expression"),
    "sample_diversity_pose": ("diversity", "sample_pose"),
    "motion_jerk_expression": ("smoothness", "motion_jerk_expression"),
    "motion_jerk_pose": ("smoothness", "motion_jerk_pose"),
    "frame_acceleration": ("smoothness", "frame_acceleration"),
    "emotion_target": ("emotion", "target"),
    "emotion_predicted": ("emotion", "predicted"),
}


# Feature dimension of each Fréchet metric: below it the covariance is rank-deficient and the value biased upwards.
# (KID is unbiased at any size; its spread is its std, and a capped subset size gets its own warning.)
FEATURE_DIMS = {"fid": 2048, "fvd": 400}


def per_video_table(records: list[VideoRecord]) -> dict[str, dict[str, float]]:
    """key -> {per-video metric: value} for every value a record has (ground truth's as `gt_<name>`), plus
    `sync_error` when SyncNet could not score the video."""
    table = {}
    for record in records:
        row = {"frames": record.values.get("frames")}
        for prefix, values in (("", record.values), ("gt_", record.values.get("gt", {}))):
            for name, (group, field) in PER_VIDEO.items():
                value = values.get(group, {}).get(field)
                if value is not None:
                    row[prefix + name] = value
            if "error" in values.get("sync", {}):
                row[prefix + "sync_error"] = values["sync"]["error"]
        table[record.key] = row
    return table


def _ok(value: float, better: str) -> dict:
    return {"value": float(value), "status": "ok", "better": better}


def _skip(reason: str, better: str) -> dict:
    return {"value": None, "status": f"skipped: {reason}", "better": better}


def _mean_of(records: list[VideoRecord], name: str, gt: bool = False) -> list[float]:
    group, field = PER_VIDEO[name]
    sources = [r.values.get("gt", {}) if gt else r.values for r in records]
    return [v[group][field] for v in sources if v.get(group, {}).get(field) is not None]


def _sample_warning(name: str, count: int) -> str | None:
    dim = FEATURE_DIMS[name]
    if count >= dim:
        return None
    unit = "clips" if name == "fvd" else "frames"
    return (
        f"only {count} {unit} per set for {dim}-d features: the covariance is rank-deficient and the value biased "
        f"upwards; compare only at equal counts (papers use >= 2048 for FVD, >= 10000 for FID)"
    )


def _with_ground_truth(entry: dict, records: list[VideoRecord], name: str) -> dict:
    offsets = name.endswith("av_offset_abs")
    values = _mean_of(records, name.removesuffix("_abs") if offsets else name, gt=True)
    if values:
        entry["ground_truth"] = float(np.mean(np.abs(values) if offsets else values))
    return entry


def _emotion_entry(records: list[VideoRecord], better: str) -> dict:
    """Emotion accuracy with per-class accuracy and confusion matrix, and ground truth's accuracy (its clips with
    an emotion in the split)."""
    entry = None
    for source in ("generated", "ground_truth"):
        values = [
            (r.values.get("gt", {}) if source == "ground_truth" else r.values).get("emotion") for r in records
        ]
        pairs = [(v["target"], v["predicted"]) for v in values if v and v.get("target") is not None]
        result = emotion_accuracy([t for t, _ in pairs], [p for _, p in pairs])
        if source == "generated":
            if result["accuracy"] is None:
                return _skip(
                    "no clip has a target emotion (split column `emotion` or emotion.generated_for)", better
                )
            entry = {
                **_ok(result["accuracy"], better),
                "videos": result["count"],
                "per_class": result["per_class"],
                "confusion": result["confusion"],
                "classes": list(EMOTIONS),
            }
        elif result["accuracy"] is not None:
            entry["ground_truth"] = result["accuracy"]
            entry["ground_truth_confusion"] = result["confusion"]
    return entry


def aggregate(cfg: EvalConfig, records: list[VideoRecord], status: dict[str, str]) -> dict[str, dict]:
    """Benchmark metrics of the requested groups; `status[group]` is "ok" or the reason the group was skipped."""
    from evaluation.fid import fid_from_features, kid_from_features
    from evaluation.fvd import fvd_from_features

    out: dict[str, dict] = {}
    for name, (group, better, _) in METRICS.items():
        if group not in cfg.metrics or (name == "kid" and not cfg.fid.kid):
            continue
        if status[group] != "ok":
            out[name] = _skip(status[group], better)
            continue
        if name in ("fid", "kid", "fvd"):
            prefix = "fid" if name in ("fid", "kid") else "fvd"
            parts = [
                (r.arrays[f"{prefix}_real"], r.arrays[f"{prefix}_fake"])
                for r in records
                if f"{prefix}_real" in r.arrays
            ]
            real = np.concatenate([p[0] for p in parts]) if parts else np.zeros((0, 1))
            fake = np.concatenate([p[1] for p in parts]) if parts else np.zeros((0, 1))
            if len(real) < 2:
                unit = "frames" if prefix == "fid" else "clips"
                out[name] = _skip(f"needs at least 2 {unit} per set, got {len(real)}", better)
            else:
                if name == "kid":
                    mean, std, size = kid_from_features(real, fake, cfg.fid.kid_subsets, cfg.fid.kid_subset_size)
                    out[name] = {**_ok(mean, better), "subset_size": size}
                    if std is None:
                        out[name]["warning"] = f"subset size capped at the {size} samples: one subset, no std"
                    else:
                        out[name]["std"] = std
                elif name == "fid":
                    out[name] = {**_ok(fid_from_features(real, fake), better), "protocol": cfg.fid.protocol}
                else:
                    out[name] = {**_ok(fvd_from_features(real, fake), better), "protocol": cfg.fvd.protocol}
                warning = _sample_warning(name, len(real)) if name in FEATURE_DIMS else None
                if warning:
                    out[name]["warning"] = "; ".join(filter(None, [out[name].get("warning"), warning]))
        elif name == "emotion_accuracy":
            out[name] = _emotion_entry(records, better)
        elif name.endswith("av_offset_abs"):
            offsets = _mean_of(records, name.removesuffix("_abs"))
            entry = _ok(np.mean(np.abs(offsets)), better) if offsets else _skip("no video scored", better)
            out[name] = _with_ground_truth(entry, records, name)
        else:
            values = _mean_of(records, name)
            if values:
                out[name] = _with_ground_truth(
                    {**_ok(np.mean(values), better), "videos": len(values)}, records, name
                )
            elif name.startswith("sample_diversity"):
                out[name] = _skip(
                    f"no clip has >= {MIN_DIVERSITY_SEEDS} seed samples (diversity.seeds, diversity.seed_pattern)",
                    better,
                )
            else:
                out[name] = _skip("no video scored", better)
    return out
