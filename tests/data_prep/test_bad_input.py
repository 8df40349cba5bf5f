"""Every kind of bad input ends as a readable row in failures.jsonl, the run goes on, and good clips still land.

One corpus holds all the cases and is sharded once (module fixture); each test checks one row.
"""

from __future__ import annotations

import json
import os
import tarfile
import tempfile
from pathlib import Path

import pytest

from data_prep.shard import main, run
from data_prep.writer import read_jsonl
from moda_train.perception.decode import BadInput, check_readable

from .conftest import render_frames, shard_config, speech_like, talking_video, write_av


def build_corpus(root: Path) -> None:
    talking_video(root / "good.mp4")
    (root / "zero_bytes.mp4").write_bytes(b"")
    (root / "not_a_video.mp4").write_text("this is a text file, not a video\n" * 20)
    whole = write_av(root / "tmp_full.mp4", render_frames(3.6, 25), 25, speech_like(3.6)).read_bytes()
    (root / "truncated.mp4").write_bytes(whole[: len(whole) // 2])  # index (moov) at the end: lost
    early = write_av(root / "tmp_faststart.mp4", render_frames(3.6, 25), 25, speech_like(3.6), faststart=True)
    (root / "truncated_faststart.mp4").write_bytes(early.read_bytes()[: early.stat().st_size // 2])
    (root / "tmp_full.mp4").unlink(), early.unlink()
    write_av(root / "silent.mp4", render_frames(3.6, 25), 25, audio=None)
    write_av(root / "audio_only.mp4", None, audio=speech_like(3.6))
    write_av(root / "no_face.mp4", render_frames(3.6, 25, faces=0), 25, speech_like(3.6))
    write_av(root / "two_faces.mp4", render_frames(3.6, 25, size=(384, 192), faces=2), 25, speech_like(3.6))
    talking_video(root / "too_short.mp4", seconds=2.0)
    (root / "dangling.mp4").symlink_to(root / "gone.mp4")
    # Inputs that are fine but unusual: they must become clips, with what was odd recorded in meta.json.
    frames = render_frames(4.0, 25)
    times = [sum(0.03 if i % 2 else 0.05 for i in range(k)) for k in range(len(frames))]  # 20 / 33 fps mixed
    write_av(root / "variable_fps.mp4", frames, 25, speech_like(times[-1] + 0.05), frame_times=times)
    talking_video(root / "portrait.mp4", seconds=3.4, size=(720, 1280))


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad_corpus")
    build_corpus(root)
    out = root.parent / (root.name + "_out")
    summary = run(shard_config(root, out, "split.val_fraction=0", "split.test_fraction=0"), progress=False)
    reasons = {Path(f["source"]).stem: f["reason"] for f in read_jsonl(out / "failures.jsonl")}
    return summary, reasons, out


@pytest.mark.parametrize(
    "name, reason",
    [
        ("zero_bytes", "empty file (0 bytes)"),
        ("not_a_video", "not a readable video file"),
        ("truncated", "MP4 file is truncated or corrupt"),
        ("truncated_faststart", "file is truncated: its header promises 3.6"),
        ("silent", "no audio stream"),
        ("audio_only", "audio only: the file has no video stream"),
        ("no_face", "no face: "),
        ("two_faces", "several faces: "),
        ("too_short", "too short: 2.00 s, a clip needs at least 3.24 s"),
        ("dangling", "broken link"),
    ],
)
def test_bad_input_is_recorded(sharded, name, reason):
    _, reasons, _ = sharded
    assert name in reasons, f"{name} has no failure row"
    assert reason in reasons[name]


def test_good_and_unusual_inputs_still_land(sharded):
    summary, reasons, out = sharded
    assert summary["clips"]["train"] == 3 and summary["failed"] == 10
    assert not {"good", "variable_fps", "portrait"} & set(reasons)
    manifest = [r for r in read_jsonl(out / "manifest.jsonl") if r["status"] == "ok"]
    frames = {Path(r["source"]).stem: r["frames"] for r in manifest}
    assert frames == {"good": 90, "variable_fps": 100, "portrait": 85}
    metas = {}
    with tarfile.open(out / "train-000000.tar") as tar:
        for member in tar:
            if member.name.endswith(".meta.json"):
                meta = json.loads(tar.extractfile(member).read())
                metas[Path(meta["source"]).stem] = meta
    assert metas["variable_fps"]["variable_frame_rate"] and not metas["good"]["variable_frame_rate"]
    assert metas["portrait"]["source_size"] == [720, 1280]


def test_paths_listed_in_a_csv_that_cannot_be_read(tmp_path):
    talking_video(tmp_path / "good.mp4")
    (tmp_path / "folder.mp4").mkdir()
    (tmp_path / "labels.csv").write_text("path,speaker\ngood.mp4,a\nfolder.mp4,b\nmissing.mp4,c\n")
    cfg = shard_config(tmp_path, tmp_path / "out", f"input.annotations={tmp_path / 'labels.csv'}")
    summary = run(cfg, progress=False)
    reasons = {f["source"]: f["reason"] for f in read_jsonl(tmp_path / "out" / "failures.jsonl")}
    assert reasons == {"folder.mp4": "is a folder, not a video file", "missing.mp4": "file not found"}
    assert sum(summary["clips"].values()) == 1


@pytest.mark.slow
def test_high_resolution_input_is_downscaled_not_rejected(tmp_path):
    # 4K at 5 fps keeps the test fast: 18 decoded frames, resampled to 25 fps by timestamp.
    talking_video(tmp_path / "uhd.mp4", seconds=3.6, fps=5, size=(3840, 2160))
    summary = run(shard_config(tmp_path, tmp_path / "out", "split.test_fraction=0", "split.val_fraction=0"), False)
    assert summary["clips"]["train"] == 1 and summary["frames"]["train"] == 90


@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX permissions")
def test_unreadable_file_is_recorded():
    # Permissions do not stop root, so when the suite runs as root the check runs in a forked child that has
    # dropped to an unprivileged user.
    folder = Path(tempfile.mkdtemp(prefix="moda-perm-"))
    folder.chmod(0o755)
    secret = folder / "secret.mp4"
    secret.write_bytes(b"\x00" * 64)
    secret.chmod(0o000)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report the reason through the pipe, never return into pytest
        try:
            if os.geteuid() == 0:
                os.setuid(65534)
            check_readable(str(secret))
            message = "readable"
        except BadInput as err:
            message = str(err)
        os.write(write_end, message.encode())
        os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    message = os.read(read_end, 4096).decode()
    os.close(read_end)
    secret.unlink()
    folder.rmdir()
    assert message.startswith("permission denied: cannot read the file")


def test_bad_configuration_stops_before_any_work(tmp_path, capsys):
    talking_video(tmp_path / "in" / "a.mp4")
    config = tmp_path / "shard.yaml"
    config.write_text(f"input:\n  root: {tmp_path / 'in'}\noutput:\n  dir: {tmp_path / 'out'}\n")
    assert main([str(config), "face.crop_sise=128"]) == 2
    assert "crop_sise" in capsys.readouterr().err
    assert main([str(config), "motion.backend=nonsense"]) == 2
    assert "nonsense" in capsys.readouterr().err
    assert main([str(config), "clip.max_seconds=4"]) == 2
    assert "must be at least twice" in capsys.readouterr().err
    assert main([str(config), "input.annotations=missing.csv"]) == 2
    assert "missing.csv" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_failure_rows_are_valid_json_with_source_and_reason(sharded):
    _, _, out = sharded
    for line in (out / "failures.jsonl").read_text().splitlines():
        row = json.loads(line)
        assert row["source"] and row["reason"] and row["key"]


def test_options_and_overrides_in_any_order_and_unwritable_output(tmp_path, capsys):
    talking_video(tmp_path / "in" / "a.mp4")
    config = tmp_path / "shard.yaml"
    config.write_text(f"input:\n  root: {tmp_path / 'in'}\noutput:\n  dir: {tmp_path / 'out'}\n")
    assert main([str(config), "--dry-run", "workers=0", "--no-progress", "split.seed=3"]) == 0
    assert json.loads(capsys.readouterr().out)["inputs"] == {"train": 1, "val": 0, "test": 0}
    (tmp_path / "file").write_text("a file, not a folder")
    assert main([str(config), "--no-progress", "workers=0", f"output.dir={tmp_path / 'file' / 'out'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"config error: output.dir='{tmp_path / 'file' / 'out'}'")
    assert "cannot write there" in err
