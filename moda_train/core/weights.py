"""The one rule for pretrained weights: config option, else environment variable, else a clear error; and the one
strict loader of released state dicts (`read_state_dict`, `load_state_dict_checked`).

Nothing is ever downloaded. Every pretrained part (speech encoder, motion extractor, evaluation networks) is listed
in `WEIGHTS` with the environment variable that may name it; `find_weights` returns the path or raises
`WeightsMissing` naming the path it looked at, the config option and the variable, which is what a user needs to
fix it (and what an evaluation report shows as "skipped: weights not found at <path>").
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where a state dict is read: the lookup runs in CLIs that check input first
    from torch import nn


class WeightsMissing(FileNotFoundError):
    """A weights file or folder is not where the config or the environment says."""


@dataclass(frozen=True)
class WeightsSource:
    label: str
    """Short name that starts messages ("HuBERT"); empty for the evaluation networks, whose message is a report's
    "skipped: weights not found at <path> ..." line."""
    what: str
    """What the file is ("LivePortrait's motion_extractor.pth, or the folder holding it")."""
    env_var: str
    """Environment variable consulted when the config leaves the path empty."""
    default: str = ""
    """Path tried when neither config nor environment names one (relative to the working folder); empty: none."""
    file_in_folder: str = ""
    """A file name looked for when the path given is a folder (e.g. a folder of LivePortrait's weights)."""
    folder_marker: str = ""
    """For weights that are a folder: a file that must exist inside it (e.g. a transformers `config.json`)."""


WEIGHTS: dict[str, WeightsSource] = {
    "hubert": WeightsSource(
        "HuBERT",
        "a HuBERT/wav2vec2 checkpoint folder (transformers layout)",
        "MODA_HUBERT_PATH",
        folder_marker="config.json",
    ),
    "liveportrait": WeightsSource(
        "LivePortrait motion-extractor",
        "LivePortrait's motion_extractor.pth, or the folder holding it",
        "MODA_LIVEPORTRAIT_PATH",
        file_in_folder="motion_extractor.pth",
    ),
    "liveportrait_renderer": WeightsSource(
        "LivePortrait renderer",
        "LivePortrait's base_models folder (appearance_feature_extractor.pth, warping_module.pth, "
        "spade_generator.pth; stitching_retargeting_module.pth there or in ../retargeting_models)",
        "MODA_LIVEPORTRAIT_PATH",
        folder_marker="warping_module.pth",
    ),
    "i3d": WeightsSource("", "the FVD I3D network", "MODA_I3D_PATH", "weights/i3d_torchscript.pt"),
    "syncnet": WeightsSource("", "syncnet_v2.model", "MODA_SYNCNET_PATH", "weights/syncnet_v2.model"),
    "s3fd": WeightsSource(
        "", "syncnet_python's S3FD face detector (sfd_face.pth)", "MODA_S3FD_PATH", "weights/sfd_face.pth"
    ),
    "alse": WeightsSource("", "a trained ALSE checkpoint", "MODA_ALSE_PATH", "weights/alse.ckpt"),
    "emotion": WeightsSource(
        "", "a trained emotion classifier checkpoint", "MODA_EMOTION_PATH", "weights/emotion.ckpt"
    ),
}


def resolve_weights(name: str, configured: str | os.PathLike | None) -> Path | None:
    """Where weights `name` should be: the configured path, else its environment variable, else its default.

    None when none of the three names a path. The path is not checked (see `find_weights`).
    """
    source = WEIGHTS[name]
    chosen = str(configured or "") or os.environ.get(source.env_var, "") or source.default
    if not chosen:
        return None
    path = Path(chosen).expanduser()
    if source.file_in_folder and path.is_dir():
        path = path / source.file_in_folder
    return path


def find_weights(name: str, configured: str | os.PathLike | None, option: str = "its path option") -> Path:
    """The checked path of weights `name`; `option` is how the user sets it (e.g. "fvd.weights").

    Raises WeightsMissing naming the path looked at and the environment variable, or, when nothing names a
    path, the config option and the environment variable.
    """
    source = WEIGHTS[name]
    path = resolve_weights(name, configured)
    if path is None:
        raise WeightsMissing(
            f"{source.what} is needed: set {option} or the {source.env_var} environment variable "
            "(nothing is downloaded)"
        )
    found = (path / source.folder_marker).is_file() if source.folder_marker else path.is_file()
    if not found:
        # The message is what an evaluation report shows after "skipped: ".
        label = f"{source.label} " if source.label else ""
        raise WeightsMissing(f"{label}weights not found at {path} (set it in the config or with {source.env_var})")
    return path


def read_state_dict(path: Path) -> dict:
    """A state dict from a torch checkpoint file (a `state_dict` entry inside is unwrapped); clear errors."""
    import torch

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
