"""A built wheel, installed non-editable into a fresh environment, runs its jobs from an empty folder.

The fresh venv reuses this environment's installed dependencies through a `.pth` line (so the install is offline
and takes seconds), but not this environment's editable install of the project: `import moda_train` must find the
wheel's copy, whose configs ship inside it.
"""

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from moda_train.data.synthetic import write_synthetic_shards

REPO = Path(__file__).resolve().parents[1]
SOURCES = [
    "setup.py",
    "setup.cfg",
    "pyproject.toml",
    "README.md",
    "moda_train",
    "data_prep",
    "evaluation",
    "configs",
]
ENTRY_POINTS = ["moda-train", "moda-shard", "moda-eval", "moda-generate", "moda-consolidate", "moda-demo"]


def _run(command: list[str], cwd: Path, env: dict[str, str]) -> str:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """(bin folder, environment) of a fresh venv holding the project installed from its wheel."""
    root = tmp_path_factory.mktemp("install")
    source = root / "source"  # a copy, so the build writes nothing into the checkout
    source.mkdir()
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(REPO / name, source / name)
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "MODA_CONFIGS")}
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    _run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(root / "dist"), str(source)], root, env)
    wheel = next((root / "dist").glob("moda_train-*.whl"))
    target = root / "venv"
    venv.create(target, with_pip=False)
    purelib = Path(sysconfig.get_paths(vars={"base": str(target)})["purelib"])
    # this environment's dependencies, as a plain path: its .pth files (the editable install) are not run
    (purelib / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    python = target / "bin" / "python"
    _run([*pip, "--python", str(python), "install", "--no-deps", "--no-index", str(wheel)], root, env)
    return target / "bin", env


@pytest.mark.slow
def test_wheel_runs_jobs_from_an_empty_folder(installed, tmp_path):
    bin_dir, env = installed
    for name in ENTRY_POINTS:
        assert (bin_dir / name).is_file(), f"no console script {name}"
    where = _run([str(bin_dir / "python"), "-c", "import moda_train; print(moda_train.__file__)"], tmp_path, env)
    assert Path(where.strip()).is_relative_to(bin_dir.parent), f"imported the checkout, not the wheel: {where}"

    listing = _run([str(bin_dir / "moda-train"), "--list-experiments"], tmp_path, env)
    assert "mmdit_tiny_cpu" in listing and str(bin_dir.parent) in listing

    # the README's path form and a bare name both resolve to the shipped experiment
    printed = _run(
        [str(bin_dir / "moda-train"), "configs/experiments/mmdit_tiny_cpu.yaml", "--print-config"], tmp_path, env
    )
    assert "task: mmdit" in printed

    shards = write_synthetic_shards(tmp_path / "shards", num_clips=4, frames=100, val_clips=0)
    log = _run(
        [
            str(bin_dir / "moda-train"), "vae_tiny_cpu", f"data.train_shards={shards}/train-*.tar",
            "data.val_shards=", f"data.stats_path={shards}/stats.json", "train.max_steps=2", "data.num_workers=0",
            "train.out_dir=runs", "train.log_every_n_steps=1",
        ],
        tmp_path,
        env,
    )  # fmt: skip
    run_dir = tmp_path / "runs" / "vae_tiny_cpu"
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert "step 2/2 (100%)" in log, log  # the step progress, in its plain form (stdout is a pipe here)
    scalars = EventAccumulator(str(run_dir / "tensorboard")).Reload().Tags()["scalars"]
    assert "train/loss" in scalars and "hp_metric" not in scalars
