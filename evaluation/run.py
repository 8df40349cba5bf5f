"""`python -m evaluation.run CONFIG.yaml [key=value ...]`: evaluate generated videos against a benchmark split.

Steps: read the split; decide per metric group whether it can run (weights present, extractor installed) or is
skipped with the reason; evaluate every clip not already in the cache (in `workers` processes, with a progress
bar); aggregate; write metrics.json, report.md and per_video.png to `out_dir`. Exit code 0 when every clip was
evaluated, 1 when some failed (they are listed in the report and retried on the next run), 2 for a config error.
From Python: `report = evaluate(cfg)` with an `EvalConfig`.
"""

from __future__ import annotations

import multiprocessing
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from evaluation.aggregate import METRICS, aggregate, per_video_table
from evaluation.cache import fingerprint, load_cached, save_cached
from evaluation.config import EvalConfig
from evaluation.per_video import VideoEvaluator, VideoRecord, alse_audio_backend, generated_path
from evaluation.report import package_versions, write_report
from evaluation.split import Clip, load_split
from evaluation.weights import sha256
from moda_train.core.checkpoint import check_motion_backend
from moda_train.core.cli import exits_on_config_error
from moda_train.core.config_loader import describe_schema, load_config, save_config
from moda_train.core.weights import WeightsMissing, find_weights, resolve_weights


def _weights_entry(path: Path) -> dict:
    return {"path": str(path), "sha256": sha256(path)}


def check_metrics(cfg: EvalConfig) -> tuple[dict[str, str], dict[str, dict]]:
    """Per requested metric group: "ok" or why it is skipped; plus the weights/extractor each one uses.

    Missing weights skip a metric; weights that exist but do not load are an error (a wrong file should be
    fixed, not silently reported as skipped).
    """
    status, weights = {}, {}
    for group in cfg.metrics:
        try:
            if group == "fid":
                from evaluation.fid import inception_weights_path

                weights["inception"] = _weights_entry(inception_weights_path())
            elif group == "fvd":
                from evaluation.fvd import load_i3d

                path = resolve_weights("i3d", cfg.fvd.weights)
                load_i3d(path)
                weights["i3d"] = _weights_entry(path)
            elif group == "sync":
                from evaluation.syncnet import load_syncnet

                path = resolve_weights("syncnet", cfg.sync.weights)
                load_syncnet(path)
                weights["syncnet"] = _weights_entry(path)
                if cfg.sync.protocol == "syncnet_python" and sync_detector(cfg) == "s3fd":
                    from moda_train.perception.s3fd import load_s3fd

                    path = find_weights("s3fd", cfg.sync.s3fd_weights, "sync.s3fd_weights")
                    load_s3fd(path)
                    weights["s3fd"] = _weights_entry(path)
            elif group == "fsim":
                from evaluation.fsim import fsim_weights_paths

                for path in fsim_weights_paths():
                    weights[f"dlib {path.name}"] = _weights_entry(path)
            elif group == "motion_sync":
                from moda_train.alse_score import ALSEScorer

                path = find_weights("alse", cfg.motion_sync.checkpoint, "motion_sync.checkpoint")
                scorer = ALSEScorer.from_checkpoint(path)
                weights["alse"] = {
                    **_weights_entry(path),
                    "audio_backend": alse_audio_backend(cfg, scorer),
                    **_motion_backend_check(scorer.module, cfg, f"the ALSE checkpoint {path}"),
                }
            elif group == "emotion":
                from moda_train.lit.emotion_module import load_classifier

                path = find_weights("emotion", cfg.emotion.checkpoint, "emotion.checkpoint")
                classifier = load_classifier(path)
                weights["emotion classifier"] = {
                    **_weights_entry(path),
                    **_motion_backend_check(classifier, cfg, f"the emotion classifier checkpoint {path}"),
                }
            if (
                group in ("diversity", "smoothness", "motion_sync", "emotion")
                and "motion extractor" not in weights
            ):
                try:
                    from moda_train.perception.motion import get_motion_extractor
                except ImportError as err:
                    raise WeightsMissing(f"the motion extractor is not available ({err})") from err
                try:
                    extractor = get_motion_extractor(cfg.motion.extractor)
                except FileNotFoundError as err:  # e.g. the liveportrait backend without its weights
                    raise WeightsMissing(str(err)) from err
                weights["motion extractor"] = {"name": extractor.name, "version": extractor.version}
            status[group] = "ok"
        except WeightsMissing as err:
            status[group] = str(err)
    return status, weights


# weights entry of check_metrics -> the metric group whose metrics carry its warning
WARNING_GROUPS = {"alse": "motion_sync", "emotion classifier": "emotion"}


def _motion_backend_check(module, cfg: EvalConfig, judge: str) -> dict:
    """The motion backend a judge of re-extracted motion was trained on, checked against `motion.extractor`
    (ValueError on a mismatch), for its weights entry; with a `warning` when the checkpoint records none."""
    recorded = module.shard_backends
    warning = check_motion_backend(recorded, cfg.motion.extractor, judge)
    entry = {"motion_backend": recorded.get("motion_backend") or None}
    return {**entry, "warning": warning} if warning else entry


def _add_weights_warnings(metrics: dict[str, dict], weights: dict[str, dict]) -> None:
    """Each weights entry's `warning` onto the metrics of its group (WARNING_GROUPS)."""
    for name, group in WARNING_GROUPS.items():
        warning = weights.get(name, {}).get("warning")
        for metric, (metric_group, _, _) in METRICS.items():
            if warning and metric_group == group and metric in metrics:
                entry = metrics[metric]
                entry["warning"] = "; ".join(filter(None, [entry.get("warning"), warning]))


# One evaluator per worker process, built by the pool's initializer (networks load once per process).
_WORKER: VideoEvaluator | None = None


def _init_worker(cfg: EvalConfig, enabled: set[str]) -> None:
    global _WORKER
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    _WORKER = VideoEvaluator(cfg, enabled)


def _evaluate_one(clip: Clip, cache_dir: Path, fp: str) -> tuple[str, VideoRecord | None, str | None]:
    try:
        record = _WORKER.evaluate(clip)
    except Exception as err:  # one bad video must not sink a 100-video job; it is reported and retried
        return clip.key, None, f"{type(err).__name__}: {err}"
    save_cached(cache_dir, record, fp)
    return clip.key, record, None


def _generate(cfg: EvalConfig, clips: list[Clip], progress: bool) -> None:
    """Generate the split's videos from the checkpoint into generated_dir (clips already there are skipped)."""
    from moda_train.generation.split import generate_split

    rows = [
        {
            "key": clip.key,
            "video": str(clip.video),
            "audio": str(clip.audio or ""),
            "reference_frame": clip.reference_frame,
            "reference": str(clip.reference or ""),
            "emotion": "" if clip.emotion is None else clip.emotion,
        }
        for clip in clips
    ]
    emotion = cfg.emotion.generated_for or None
    generate_split(
        cfg.checkpoint,
        rows,
        cfg.generated_dir,
        seeds=cfg.generation_seeds,
        emotion=emotion,
        progress=progress,
        renderer=cfg.renderer or None,
        renderer_options=dict(cfg.renderer_options),
    )


def evaluate(cfg: EvalConfig, resolved: DictConfig | None = None, progress: bool = True) -> dict:
    """Run the whole evaluation (module docstring) and return the report dict that is written as metrics.json."""
    if cfg.checkpoint and not Path(cfg.checkpoint).exists():
        raise FileNotFoundError(
            f"checkpoint={cfg.checkpoint!r}: no such checkpoint (train one with moda-train, "
            "or set generated_dir= to score videos generated elsewhere)"
        )
    clips = load_split(cfg.split, cfg.split_name, cfg.video_root)
    if cfg.checkpoint:
        _generate(cfg, clips, progress)
    missing = [str(generated_path(cfg, c.key)) for c in clips if not generated_path(cfg, c.key).is_file()]
    if missing:
        raise ValueError(f"{len(missing)} generated video(s) not found, e.g. {', '.join(missing[:3])}")
    out_dir, cache_dir = Path(cfg.out_dir), Path(cfg.out_dir) / "cache"
    out_dir.mkdir(parents=True, exist_ok=True)
    save_config(resolved if resolved is not None else OmegaConf.structured(cfg), out_dir / "config.yaml")

    status, weights = check_metrics(cfg)
    enabled = {group for group, s in status.items() if s == "ok"}
    weight_ids = {name: info.get("sha256", str(info)) for name, info in weights.items()}
    prints = {c.key: fingerprint(cfg, c, enabled, weight_ids) for c in clips}
    records: dict[str, VideoRecord] = {}
    for clip in clips:
        cached = load_cached(cache_dir, clip.key, prints[clip.key])
        if cached is not None:
            records[clip.key] = cached
    todo = [c for c in clips if c.key not in records]
    failures: dict[str, str] = {}
    bar = tqdm(
        total=len(clips), initial=len(records), desc="evaluating videos", unit="video", disable=not progress
    )
    if cfg.workers == 0:
        threads = torch.get_num_threads()
        _init_worker(cfg, enabled)
        results = (_evaluate_one(c, cache_dir, prints[c.key]) for c in todo)
        for key, record, error in results:
            records[key] = record
            if error:
                failures[key] = error
            bar.update()
        torch.set_num_threads(threads)
    elif todo:
        # spawn, not fork: forked children inherit torch's thread pool state and can deadlock.
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(
            cfg.workers, mp_context=context, initializer=_init_worker, initargs=(cfg, enabled)
        ) as pool:
            futures = [pool.submit(_evaluate_one, c, cache_dir, prints[c.key]) for c in todo]
            for future in as_completed(futures):
                key, record, error = future.result()
                records[key] = record
                if error:
                    failures[key] = error
                bar.update()
    bar.close()

    done = [records[c.key] for c in clips if records.get(c.key) is not None]
    metrics = aggregate(cfg, done, status)
    _add_weights_warnings(metrics, weights)
    report = {
        "title": _title(cfg, len(clips)),
        "metrics": metrics,
        "per_video": per_video_table(done),
        "failures": failures,
        "protocol": {
            "counts": _counts(cfg, clips, done, failures),
            "weights": weights,
            **_protocols(cfg, status),
        },
        "versions": package_versions(),
        "config": OmegaConf.to_container(resolved if resolved is not None else OmegaConf.structured(cfg)),
    }
    write_report(report, out_dir)
    return report


def _title(cfg: EvalConfig, num_clips: int) -> dict:
    """What the report is about: method (name, else checkpoint, else generated_dir), split, clip count."""
    method = cfg.name or cfg.checkpoint or cfg.generated_dir
    split = cfg.split + (f" (split {cfg.split_name})" if cfg.split.endswith("manifest.jsonl") else "")
    return {"method": method, "checkpoint": cfg.checkpoint or None, "split": split, "clips": num_clips}


def sync_detector(cfg: EvalConfig) -> str:
    """The face detector of the syncnet_python protocol: `sync.detector` with `auto` resolved."""
    from evaluation.sync import chosen_detector

    return chosen_detector(cfg.sync.detector, cfg.sync.s3fd_weights)


def _protocols(cfg: EvalConfig, status: dict[str, str]) -> dict:
    """The named protocol of every set metric and Sync-C/D that ran, with Sync's detector and known differences."""
    from evaluation.sync import detector_description, differences

    out = {}
    if status.get("fid") == "ok":
        out["fid"] = {"protocol": cfg.fid.protocol}
    if status.get("fvd") == "ok":
        out["fvd"] = {"protocol": cfg.fvd.protocol, "clip_frames": cfg.fvd.clip_frames, "seed": cfg.fvd.seed}
    if status.get("sync") == "ok":
        s, detector = cfg.sync, sync_detector(cfg)
        out["sync"] = {
            "protocol": s.protocol,
            "differences from syncnet_python": differences(s.protocol, detector, s.s3fd_scale, s.s3fd_confidence),
        }
        if s.protocol == "syncnet_python":
            confidence = s.s3fd_confidence if detector == "s3fd" else s.detector_confidence
            out["sync"]["detector"] = detector_description(detector, confidence, s.s3fd_scale)
            out["sync"]["min_track"] = cfg.sync.min_track
            out["sync"]["min_face_size"] = cfg.sync.min_face_size
    return out


def _counts(cfg: EvalConfig, clips: list[Clip], done: list[VideoRecord], failures: dict) -> dict:
    def total(group: str, field: str) -> int:
        return int(sum(r.values.get(group, {}).get(field, 0) for r in done))

    counts = {
        "clips in split": len(clips),
        "clips evaluated": len(done),
        "clips failed": len(failures),
        "frames compared (all clips)": sum(r.values["frames"] for r in done),
    }
    if "fid" in cfg.metrics:
        counts["FID frames per set"] = total("fid", "frames")
        counts["FID frame sampling"] = f"{cfg.fid.frames_per_video or 'all'} evenly spaced frames per video"
        counts["FID preprocessing"] = cfg.fid.protocol
    if "fvd" in cfg.metrics:
        counts["FVD clips per set"] = total("fvd", "clips")
        counts["FVD clip"] = (
            f"{cfg.fvd.clip_frames} frames, one clip per video: random start (seed {cfg.fvd.seed}) in the real "
            "video, frame 0 in the generated one"
        )
    if "sync" in cfg.metrics:
        counts["SyncNet windows"] = total("sync", "windows")
        counts["SyncNet offsets searched"] = f"-{cfg.sync.vshift}..{cfg.sync.vshift}"
        counts["SyncNet videos not scored (no face track, too short)"] = sum(
            "error" in r.values.get("sync", {}) for r in done
        )
    if "motion_sync" in cfg.metrics:
        counts["ALSE windows"] = total("motion_sync", "windows")
    if "fsim" in cfg.metrics:
        counts["F-SIM frames"] = total("fsim", "frames")
        counts["F-SIM frames without a detected face"] = total("fsim", "fallback_frames")
    return counts


@exits_on_config_error
def main(argv: list[str] | None = None) -> int:
    """CLI entry point (see the module docstring); returns the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        print("usage: python -m evaluation.run CONFIG.yaml [key=value ...] [--print-config]\n")
        print(describe_schema(EvalConfig))
        return 0 if argv else 2
    show = "--print-config" in argv
    argv = [a for a in argv if a != "--print-config"]
    cfg, resolved = load_config(argv[0], argv[1:], schema=EvalConfig, group="eval")
    if show:
        print(OmegaConf.to_yaml(resolved))
        return 0
    try:
        report = evaluate(cfg, resolved)
    except (ValueError, FileNotFoundError) as err:  # bad input (split, checkpoint, videos): one line, no traceback
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(Path(cfg.out_dir, "report.md").read_text())
    return 1 if report["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
