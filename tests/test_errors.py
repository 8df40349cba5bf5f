"""The mistakes a new user makes first each give one line that says what to do, and no traceback."""

import subprocess
import sys

from evaluation.run import main as eval_main
from moda_train.train import main as train_main


def _one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, f"expected one line, got:\n{text}"
    return lines[0]


def test_training_without_stats_json_names_the_key_and_the_fix(tmp_path, capsys):
    code = train_main(
        [
            "vae_tiny_cpu",
            "data.train_shards=x/train-*.tar",
            "data.stats_path=nope/stats.json",
            f"train.out_dir={tmp_path}",
        ]
    )
    assert code == 2
    assert _one_line(capsys.readouterr().err) == (
        "config error: data.stats_path='nope/stats.json': motion statistics not found at nope/stats.json: "
        "run data_prep.shard first, or set data.stats_path"
    )
    assert not any(tmp_path.iterdir())  # no half-made run folder


def test_evaluation_with_a_missing_checkpoint(tmp_path, capsys):
    code = eval_main(["demo_checkpoint", "checkpoint=nope.ckpt", f"out_dir={tmp_path}"])
    assert code == 2
    line = _one_line(capsys.readouterr().err)
    assert line.startswith("error: checkpoint='nope.ckpt': no such checkpoint") and "generated_dir=" in line


def test_evaluation_with_nothing_to_score(tmp_path, capsys):
    assert eval_main(["demo_checkpoint", f"out_dir={tmp_path}"]) == 2
    line = _one_line(capsys.readouterr().err)
    assert "nothing to score: set checkpoint=" in line and "or generated_dir=" in line


GENERATE = """
import sys
from moda_train.generate import main
code = main(sys.argv[1:])
print(code, "moda_train.lit.mmdit_module" in sys.modules, "torch" in sys.modules)
"""


def test_generation_rejects_bad_audio_before_loading_the_model(tmp_path):
    from skimage import data
    from skimage.io import imsave

    photo = tmp_path / "face.png"
    imsave(photo, data.astronaut())
    (tmp_path / "notes.wav").write_text("not audio")
    (tmp_path / "model.ckpt").write_bytes(b"")
    cases = {
        str(tmp_path / "missing.wav"): "error: audio file not found:",
        str(tmp_path / "notes.wav"): "error: cannot read audio from",
    }
    for audio, message in cases.items():
        args = ["--checkpoint", str(tmp_path / "model.ckpt"), "--image", str(photo), "--audio", audio]
        result = subprocess.run(
            [sys.executable, "-c", GENERATE, *args], capture_output=True, text=True, timeout=120
        )
        assert result.stdout.split() == ["1", "False", "False"], result  # exit 1; neither model code nor torch
        assert _one_line(result.stderr).startswith(message)
