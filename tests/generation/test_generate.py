"""End to end: checkpoint + photo + speech file -> mp4 (25 fps, audio muxed) + motion; CLI; split caching."""

from __future__ import annotations

import av
import cv2
import numpy as np
import pytest

from moda_train.core.motion_layout import MOTION_DIM
from moda_train.generate import main
from moda_train.generation.motion_generator import AudioBackendMismatch
from moda_train.generation.pipeline import GenerationPipeline, generate_video
from moda_train.generation.split import generate_split
from moda_train.perception.video_io import write_video

from .generation_helpers import speech_like, write_wav

pytestmark = pytest.mark.slow  # trains the shared tiny checkpoint (about a minute on a busy 2-core machine)


def video_facts(path) -> tuple[int, float, bool, tuple[int, int]]:
    """Frame count, frame rate, whether an audio stream is present, and (height, width)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        return frames, float(stream.average_rate), bool(container.streams.audio), (stream.height, stream.width)


@pytest.fixture(scope="module")
def photo_file(photo, tmp_path_factory):
    path = tmp_path_factory.mktemp("photo") / "astronaut.png"
    cv2.imwrite(str(path), cv2.cvtColor(photo, cv2.COLOR_RGB2BGR))
    return path


def test_generate_video_from_any_audio_format(checkpoint, photo_file, tmp_path):
    """44.1 kHz stereo speech shorter than one window -> one video per seed at 25 fps with the audio muxed in."""
    wave = speech_like(2.5, sample_rate=44100)
    audio = write_wav(tmp_path / "speech.wav", wave, sample_rate=44100, channels=2)
    with pytest.warns(UserWarning, match=r"the audio is 2.50 s \(63 frames\), shorter than one 80-frame window"):
        paths = generate_video(
            checkpoint, photo_file, audio, tmp_path / "out", seeds=[0, 1], steps=2, progress=False
        )
    assert [p.name for p in paths] == ["astronaut_speech_seed0.mp4", "astronaut_speech_seed1.mp4"]
    expected_frames = int(np.ceil(2.5 * 16000 / 640))
    motions = []
    for path in paths:
        frames, fps, has_audio, size = video_facts(path)
        assert (frames, fps, has_audio, size) == (expected_frames, 25.0, True, (512, 512))
        motion = np.load(path.with_suffix(".npy"))
        assert motion.shape == (expected_frames, MOTION_DIM) and motion.dtype == np.float32
        motions.append(motion)
    assert not np.allclose(motions[0], motions[1])


def test_cli(checkpoint, photo_file, tmp_path, capsys):
    audio = write_wav(tmp_path / "speech.wav", speech_like(1.2))
    args = ["--checkpoint", checkpoint, "--image", str(photo_file), "--audio", audio, "--out", str(tmp_path)]
    assert main([*args, "--emotion", "happiness", "--steps", "1", "--name", "clip", "--no-progress"]) == 0
    assert (tmp_path / "clip_seed0.mp4").is_file() and (tmp_path / "clip_seed0.npy").is_file()
    assert capsys.readouterr().err.count("warning: the audio is 1.20 s (30 frames), shorter than one") == 1
    assert main([*args, "--emotion", "boredom", "--no-progress"]) == 1
    assert "unknown emotion 'boredom'" in capsys.readouterr().err
    sharded = tmp_path / "last.ckpt"  # what DeepSpeed training writes: a folder of rank shards
    (sharded / "checkpoint").mkdir(parents=True)
    assert main(["--checkpoint", str(sharded), *args[2:], "--no-progress"]) == 1
    assert "must be consolidated first, with `python -m moda_train.consolidate" in capsys.readouterr().err
    missing = ["--checkpoint", checkpoint, "--image", str(tmp_path / "nope.jpg"), "--audio", audio]
    assert main(missing) == 1
    assert "image not found" in capsys.readouterr().err
    (tmp_path / "bad.jpg").write_text("not a picture")
    assert main([*args[:2], "--image", str(tmp_path / "bad.jpg"), *args[4:]]) == 1
    assert "cannot read image" in capsys.readouterr().err
    cv2.imwrite(str(tmp_path / "wall.png"), np.full((200, 300, 3), 128, np.uint8))
    assert main([*args[:2], "--image", str(tmp_path / "wall.png"), *args[4:], "--no-progress"]) == 1
    assert "no face found in the reference image" in capsys.readouterr().err


def test_backend_checks_name_what_is_wrong(checkpoint):
    with pytest.raises(AudioBackendMismatch, match=r"trained on 'logmel'.*'hubert' audio backend"):
        GenerationPipeline(checkpoint, audio_backend="hubert")
    with pytest.raises(ValueError, match=r"made with the 'landmarks' motion backend, not 'liveportrait'"):
        GenerationPipeline(checkpoint, motion_backend="liveportrait")


def test_generate_split_generates_once_and_caches(checkpoint, photo, tmp_path):
    """Two benchmark clips (reference frame of the ground-truth video; its own audio track or a separate file):
    a rerun regenerates nothing."""
    frame = cv2.resize(photo, (320, 320), interpolation=cv2.INTER_AREA)
    wave = speech_like(1.6, seed=1)
    video = write_video(tmp_path / "gt.mp4", np.repeat(frame[None], 40, axis=0), audio=wave)
    other_audio = write_wav(tmp_path / "other.wav", speech_like(2.0, seed=2))
    rows = [
        {"key": "clip_a", "video": str(video), "audio": "", "reference_frame": "3"},
        {"key": "clip_b", "video": str(video), "audio": other_audio, "reference_frame": 0},
    ]
    out = tmp_path / "generated"
    result = generate_split(checkpoint, rows, out, seeds=(0, 2), steps=1, progress=False)
    assert result == {"clip_a": out / "clip_a.mp4", "clip_b": out / "clip_b.mp4"}
    assert video_facts(out / "clip_a.mp4")[:3] == (40, 25.0, True)
    assert video_facts(out / "clip_b_seed2.mp4")[0] == 50
    assert (out / "clip_a.mp4").read_bytes() == (out / "clip_a_seed0.mp4").read_bytes()
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert generate_split(checkpoint, rows, out, seeds=(0, 2), progress=False) == result
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == stamps
    with pytest.raises(ValueError, match="needs a `key` and a `video`"):
        generate_split(checkpoint, [{"key": "x"}], out)
