"""choose_resume over single-file checkpoints: the newest complete one wins, each one passed over is named."""

from __future__ import annotations

import torch

from moda_train.launch.checkpointing import checkpoint_problem, choose_resume, config_changes


def _save(path, step: int) -> None:
    torch.save(
        {"state_dict": {"w": torch.ones(64)}, "global_step": step, "hyper_parameters": {"config": {}}}, path
    )


def test_damaged_last_falls_back_to_the_newest_complete_step(tmp_path):
    messages: list[str] = []
    assert choose_resume(tmp_path, messages.append) is None and messages == []  # a fresh folder: no error
    for step in (4, 8, 12):
        _save(tmp_path / f"step-{step:07d}.ckpt", step)
    (tmp_path / "last.ckpt").write_bytes(b"")  # what an in-place save killed at the wrong moment left
    truncated = tmp_path / "step-0000012.ckpt"
    truncated.write_bytes(truncated.read_bytes()[:200])
    (tmp_path / "last.ckpt.tmp").write_bytes(b"partial")  # never a candidate

    chosen = choose_resume(tmp_path, messages.append)
    assert chosen.path == tmp_path / "step-0000008.ckpt" and chosen.step == 8
    assert messages[0] == f"resume: not using {tmp_path / 'last.ckpt'}: empty (0 bytes)"
    assert messages[1].startswith(f"resume: not using {truncated}: unreadable")
    assert messages[2] == f"resume: falling back to {tmp_path / 'step-0000008.ckpt'} (step 8)"


def test_a_step_checkpoint_newer_than_last_wins(tmp_path):
    _save(tmp_path / "last.ckpt", 8)
    _save(tmp_path / "step-0000008.ckpt", 8)
    messages: list[str] = []
    assert choose_resume(tmp_path, messages.append).path == tmp_path / "last.ckpt"  # a tie goes to last
    _save(tmp_path / "step-0000012.ckpt", 12)  # saved just before a kill inside the save of last
    assert choose_resume(tmp_path, messages.append).step == 12
    assert "step-0000012.ckpt (step 12) is newer than last.ckpt (step 8)" in messages[0]
    assert checkpoint_problem(tmp_path / "missing.ckpt").problem == "missing"


def test_config_changes_split_architecture_from_the_rest():
    saved = {"task": "mmdit", "model": {"rope_theta": 256.0, "depth": 2}, "optim": {"lr": 1e-3},
             "train": {"run_name": "a", "out_dir": "x", "checkpoint_every_n_steps": 10}}  # fmt: skip
    new = {"task": "mmdit", "model": {"rope_theta": 1000.0, "depth": 2}, "optim": {"lr": 5e-4},
           "train": {"run_name": "b", "out_dir": "y", "checkpoint_every_n_steps": 20}}  # fmt: skip
    architecture, other = config_changes(saved, new)
    assert architecture == ["model.rope_theta: 256.0 -> 1000.0"]
    assert other == ["optim.lr: 0.001 -> 0.0005", "train.checkpoint_every_n_steps: 10 -> 20"]
