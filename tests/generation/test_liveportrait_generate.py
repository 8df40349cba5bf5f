"""`python -m moda_train.generate` and `evaluation.run checkpoint=...` with `renderer=liveportrait`, on random
weights in the released layouts: an imported net-200.pth (reduced width, logmel audio in place of HuBERT), the
`liveportrait` motion backend and the LivePortrait renderer files (reduced sizes)."""

from __future__ import annotations

import av
import cv2
import pytest
import torch

from evaluation.config import EvalConfig
from evaluation.run import evaluate
from moda_train.core.config_loader import load_config
from moda_train.generate import main
from moda_train.import_official import import_official
from moda_train.perception.motion.liveportrait_net import LivePortraitMotionNet
from moda_train.perception.video_io import write_video
from tests.models.released_moda import write_released_net, write_released_stats
from tests.perception.liveportrait_layout import write_released_renderer

from .generation_helpers import speech_like, write_wav

pytestmark = pytest.mark.slow  # about 2 s per rendered frame on one CPU core


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    root = tmp_path_factory.mktemp("released")
    liveportrait = root / "liveportrait"
    write_released_renderer(liveportrait)
    torch.manual_seed(0)
    motion_net = LivePortraitMotionNet(depths=(1, 1, 1, 1), dims=(8, 16, 32, 64))
    torch.save(
        {f"detector.{k}": v for k, v in motion_net.state_dict().items()}, liveportrait / "motion_extractor.pth"
    )
    write_released_net(root / "net-200.pth", hidden=64, head_dim=16, audio_dim=320)
    write_released_stats(root / "mean.pt")
    ckpt = import_official(
        root / "net-200.pth", root / "mean.pt", root / "official.ckpt", ["data.audio_backend=logmel"], log=print
    )
    return root, liveportrait, ckpt


def test_generate_and_evaluate_with_the_liveportrait_renderer(released, photo, tmp_path, monkeypatch):
    root, liveportrait, ckpt = released
    cv2.imwrite(str(tmp_path / "photo.png"), cv2.cvtColor(photo, cv2.COLOR_RGB2BGR))
    audio = write_wav(tmp_path / "speech.wav", speech_like(0.4))
    args = ["--checkpoint", str(ckpt), "--image", str(tmp_path / "photo.png"), "--audio", audio, "--steps", "1"]
    options = ["--motion-option", f"path={liveportrait}", "--renderer-option", f"path={liveportrait}"]
    out = tmp_path / "out"
    # no --renderer: the one made for the checkpoint's `liveportrait` motion is chosen
    assert main([*args, *options, "--out", str(out), "--name", "clip"]) == 0
    with av.open(str(out / "clip_seed0.mp4")) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(container.streams.video[0])]
    assert len(frames) == 10 and frames[0].shape == photo.shape

    # a one-clip benchmark split (the still photo speaking), generated from the checkpoint and scored; evaluation
    # finds the motion extractor through the environment, the renderer through its option
    monkeypatch.setenv("MODA_LIVEPORTRAIT_PATH", str(liveportrait))
    wave = speech_like(0.4)
    write_video(tmp_path / "truth.mp4", [photo] * 10, fps=25, audio=wave, sample_rate=16000)
    (tmp_path / "split.csv").write_text(f"key,video\nclip,{tmp_path / 'truth.mp4'}\n")
    cfg, _ = load_config(
        None,
        [
            f"split={tmp_path / 'split.csv'}", f"checkpoint={ckpt}", f"out_dir={tmp_path / 'eval'}",
            "renderer=liveportrait", f"renderer_options.path={liveportrait}", "metrics=[fid]",
            "fid.frames_per_video=4", "threads=1",
        ],
        schema=EvalConfig,
    )  # fmt: skip
    report = evaluate(cfg, progress=False)
    assert (tmp_path / "eval" / "generated" / "clip.mp4").is_file()
    assert report["metrics"]["fid"]["status"] == "ok"


def test_generation_refuses_an_extractor_of_another_convention(released, photo, tmp_path, capsys):
    """The imported checkpoint records the released convention; canonical-expression motion is a one-line error."""
    _, liveportrait, ckpt = released
    cv2.imwrite(str(tmp_path / "photo.png"), cv2.cvtColor(photo, cv2.COLOR_RGB2BGR))
    audio = write_wav(tmp_path / "speech.wav", speech_like(0.4))
    args = ["--checkpoint", str(ckpt), "--image", str(tmp_path / "photo.png"), "--audio", audio, "--steps", "1"]
    options = ["--motion-option", f"path={liveportrait}", "--motion-option", "native_expression=false"]
    assert main([*args, *options, "--out", str(tmp_path / "out")]) == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert error == [
        "error: the checkpoint was trained on motion of the 'liveportrait-crop,native-expression' convention but "
        "the liveportrait motion backend as configured gives 'liveportrait-crop,canonical-expression': configure "
        "it as the training data was (the liveportrait backend's `crop` and `native_expression` options)"
    ]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
