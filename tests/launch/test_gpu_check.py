"""benchmarks/gpu_check.py on a machine without a GPU: a clear exit, and its --dry-run (tiny model on CPU) runs
every stage of the script through the real DeepSpeed ZeRO-2 bf16 path."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from .conftest import REPO_ROOT, RUN_TIMEOUT_S, clean_env

SCRIPT = REPO_ROOT / "benchmarks" / "gpu_check.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        cwd=REPO_ROOT,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the behaviour without a GPU")
def test_without_cuda_it_exits_with_a_message():
    result = _run()
    assert result.returncode == 2
    assert "no CUDA device visible" in result.stdout and "--dry-run" in result.stdout


@pytest.mark.slow
def test_dry_run_prints_every_figure():
    result = _run("--dry-run", "--steps", "2", "--warmup", "1")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    assert "DeepSpeed ZeRO stage 2, bf16 True" in output
    for figure in ("step time:", "windows/s:", "MFU:", "real-time factor"):
        assert figure in output
