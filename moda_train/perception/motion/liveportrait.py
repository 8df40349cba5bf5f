"""The `liveportrait` motion backend: LivePortrait's motion extractor (implicit keypoints, expression, pose).

The checkpoint comes from a local path (the `path` option or the MODA_LIVEPORTRAIT_PATH environment variable):
LivePortrait's `motion_extractor.pth`, or the folder that holds it. Nothing is downloaded.

Per frame the network gives canonical keypoints kp, expression exp, pitch/yaw/roll, scale s and translation t;
the motion is (exp, s, tx, ty, 0, pitch, yaw, roll) as in MoDA, and identity = kp of the reference frame.

Two conventions, both recorded in shards (`convention`, `.version`) and checked at training and generation time:
* crop (`crop`): `liveportrait` by default, LivePortrait's rotation-aligned crop from face landmarks
  (`moda_train.perception.face_align`: scale 2.3, shifted up by 0.125 of the side, eye line horizontal, 512 px
  shrunk to 256), which data_prep and generation cut for this backend; `box` takes the framework's centred box
  crop (`FaceConfig.crop_scale`) instead.
* expression (`native_expression`): True by default, LivePortrait's own `exp`, added after the rotation
  (`s * (kp @ R.T + exp) + t`), which is what MoDA's released model was trained on: its inference code feeds the
  extractor's raw `exp` to the model and places keypoints as `scale * (kp @ R + exp) + t` with LivePortrait's
  (transposed) rotation. False rotates the expression back into the canonical frame (`exp @ R`), the
  framework's `landmarks` convention `s * (kp + exp) @ R.T + t` (see `pose`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from moda_train.core.motion_layout import (
    CROP_CONVENTIONS,
    EXPRESSION,
    MOTION_DIM,
    NUM_KEYPOINTS,
    ROTATION,
    SCALE,
    TRANSLATION,
)
from moda_train.core.weights import WEIGHTS, find_weights

from .base import MotionExtractor, MotionSequence, check_frames
from .pose import rotation_matrix

LIVEPORTRAIT_PATH_ENV = WEIGHTS["liveportrait"].env_var
CHECKPOINT_NAME = WEIGHTS["liveportrait"].file_in_folder
INPUT_SIZE = 256


def resolve_checkpoint(path: str | os.PathLike | None) -> Path:
    """The motion-extractor weights file from an option, a folder or the environment; a clear error if missing."""
    return find_weights("liveportrait", path, "the liveportrait backend's `path` option")


class LivePortraitMotionExtractor(MotionExtractor):
    """LivePortrait's motion extractor M behind the common interface (see the module docstring)."""

    name = "liveportrait"

    def __init__(
        self,
        path: str | os.PathLike | None = None,
        device: str = "cpu",
        batch_size: int = 16,
        native_expression: bool = True,
        crop: str = "liveportrait",
    ) -> None:
        import torch

        if crop not in CROP_CONVENTIONS:
            raise ValueError(f"crop={crop!r}: choose one of {', '.join(CROP_CONVENTIONS)}")
        if not isinstance(native_expression, bool):
            raise ValueError(f"native_expression must be true or false, got {native_expression!r}")

        from .liveportrait_net import net_from_state_dict

        self.checkpoint = resolve_checkpoint(path)
        state = torch.load(self.checkpoint, map_location="cpu", weights_only=True)
        state = state.get("model", state) if isinstance(state, dict) else state
        # LivePortrait saves its MotionExtractor wrapper, whose network sits under `detector.`.
        state = {key.removeprefix("detector."): value for key, value in state.items()}
        try:
            self.net = net_from_state_dict(state)
        except (KeyError, RuntimeError) as err:
            raise ValueError(
                f"{self.checkpoint} is not a LivePortrait motion-extractor checkpoint: {err}"
            ) from err
        if self.net.fc_kp.out_features != 3 * NUM_KEYPOINTS:
            raise ValueError(f"{self.checkpoint} predicts {self.net.fc_kp.out_features // 3} keypoints, not 21")
        self.net.eval().to(device)
        self.device = device
        self.batch_size = batch_size
        self.native_expression = native_expression
        self.expression = "native" if native_expression else "canonical"
        self.crop = crop
        self.version = f"liveportrait:{self.checkpoint.name}:{self.convention}"

    def raw_outputs(self, frames: np.ndarray) -> dict[str, np.ndarray]:
        """The network's per-frame outputs, float64: kp [T, 21, 3], exp [T, 21, 3], angles [T, 3] (pitch, yaw,
        roll degrees), scale [T], t [T, 3]. Frames must be 256 px crops (LivePortrait's input size)."""
        import torch

        from .liveportrait_net import bins_to_degrees

        frames = check_frames(frames, 0)
        if frames.shape[1] != INPUT_SIZE:
            raise ValueError(f"the liveportrait backend takes {INPUT_SIZE} px crops, got {frames.shape[1]} px")
        parts: dict[str, list] = {key: [] for key in ("kp", "exp", "angles", "scale", "t")}
        with torch.inference_mode():
            for start in range(0, len(frames), self.batch_size):
                batch = torch.from_numpy(frames[start : start + self.batch_size]).to(self.device)
                out = self.net(batch.permute(0, 3, 1, 2).float() / 255.0)
                angles = torch.stack([bins_to_degrees(out[k]) for k in ("pitch", "yaw", "roll")], dim=1)
                for key, value in (
                    ("kp", out["kp"].reshape(-1, NUM_KEYPOINTS, 3)),
                    ("exp", out["exp"].reshape(-1, NUM_KEYPOINTS, 3)),
                    ("angles", angles),
                    ("scale", out["scale"][:, 0]),
                    ("t", out["t"]),
                ):
                    parts[key].append(value.double().cpu().numpy())
        return {key: np.concatenate(value) for key, value in parts.items()}

    def extract(self, frames: np.ndarray, ref_index: int = 0) -> MotionSequence:
        frames = check_frames(frames, ref_index)
        raw = self.raw_outputs(frames)
        expression = raw["exp"]
        if not self.native_expression:
            # kp @ R.T + exp == (kp + exp @ R) @ R.T, since R @ R.T = I.
            expression = expression @ rotation_matrix(raw["angles"])
        motion = np.zeros((len(frames), MOTION_DIM))
        motion[:, EXPRESSION] = expression.reshape(len(frames), -1)
        motion[:, SCALE] = raw["scale"][:, None]
        motion[:, TRANSLATION] = raw["t"] * [1.0, 1.0, 0.0]  # tz is kept at 0, as in MoDA
        motion[:, ROTATION] = raw["angles"]
        identity = raw["kp"][ref_index].reshape(-1)
        valid = np.ones(len(frames), dtype=bool)  # the network has no notion of "no face": the crop decides
        return MotionSequence(motion.astype(np.float32), identity.astype(np.float32), valid)
