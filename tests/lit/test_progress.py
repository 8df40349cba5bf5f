"""Step-based training progress: what a terminal and a Slurm log show during a real (tiny) Lightning run."""

import io
import re

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from moda_train.lit.progress import StepProgress, format_duration


class Toy(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(3, 1)

    def training_step(self, batch, batch_idx):
        loss = self.layer(batch[0]).pow(2).mean()
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx):
        self.log("val/loss", self.layer(batch[0]).pow(2).mean())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _fit(progress: StepProgress, max_steps: int = 4) -> None:
    data = DataLoader(TensorDataset(torch.randn(64, 3)), batch_size=2)
    trainer = L.Trainer(
        max_steps=max_steps, accelerator="cpu", callbacks=[progress], logger=False, enable_checkpointing=False,
        enable_model_summary=False, accumulate_grad_batches=2, val_check_interval=4, limit_val_batches=2,
        num_sanity_val_steps=0,
    )  # fmt: skip
    trainer.fit(Toy(), data, data)


def test_log_mode_prints_one_plain_line_per_interval():
    stream = io.StringIO()
    _fit(StepProgress(windows_per_step=4, interval_s=0.0, stream=stream, tty=False))
    lines = stream.getvalue().splitlines()
    assert lines[0] == "training: step 0 of 4"
    steps = [line for line in lines if line.startswith("step ")]
    # 8 batches with accumulation 2: one line per optimizer step, none mid-accumulation
    assert [line.split()[1] for line in steps] == ["1/4", "2/4", "3/4", "4/4"]
    assert re.fullmatch(r"step 4/4 \(100%\)  loss \d+\.\d{4}  \d+\.\d windows/s  elapsed \S+  ETA 0s", steps[-1])
    assert any(re.fullmatch(r"validation at step 2: val/loss \d+\.\d{4}", line) for line in lines), lines
    assert lines[-1].startswith("training done: step 4/4 in ")
    assert "\r" not in stream.getvalue()  # no bar redraws in a log


def test_log_mode_interval_keeps_a_long_run_short():
    stream = io.StringIO()
    _fit(StepProgress(windows_per_step=4, interval_s=3600.0, stream=stream, tty=False), max_steps=6)
    steps = [line.split()[1] for line in stream.getvalue().splitlines() if line.startswith("step ")]
    assert steps == ["1/6", "6/6"]  # the first step and the last, nothing between within the hour


def test_terminal_mode_draws_a_step_bar():
    stream = io.StringIO()
    _fit(StepProgress(windows_per_step=4, stream=stream, tty=True))
    text = stream.getvalue()
    assert "train 4/4" in text and "windows/s" in text and "loss " in text
    assert "validation at step 2: val/loss" in text


@pytest.mark.parametrize(
    ("seconds", "text"), [(12.4, "12s"), (245, "4m05s"), (3720, "1h02m"), (float("nan"), "?"), (float("inf"), "?")]
)
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text
