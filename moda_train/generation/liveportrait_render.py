"""The LivePortrait renderer: reference photo + driven motion [T, 70] (`liveportrait` motion backend) -> frames.

Per reference photo, once: the face crop the motion extractor saw (`ReferenceFace.crop`, 256 px: LivePortrait's
rotation-aligned crop by default, `perception.face_align`), its appearance feature volume (network F) and its
source keypoints (the photo's own motion and canonical keypoints through `moda_train.perception.motion.pose`, in
the reference's expression convention). Per batch of frames: the driven keypoints of each motion row, the
stitching network's correction (so the face lines up with the photo at the crop border), warp W and generator G
-> a 512 px face, pasted back into the full photo through the inverse of the crop transform
(`ReferenceFace.crop_matrix` at 512 px, LivePortrait's `M_c2o`) with a feathered square mask: the mask falls from
1 to 0 over the outer `feather` fraction of the crop, and every photo pixel outside the crop is left exactly as
it was.

The crop and its transform come from the one implementation the motion extractor's crops come from
(`face_align` or `face_crop`): keypoints and crop must be the same frame.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import cv2
import numpy as np
import torch

from moda_train.core.weights import find_weights
from moda_train.generation.render import ReferenceFace, Renderer, check_motion
from moda_train.perception.liveportrait import RendererNetworks, stitch
from moda_train.perception.motion import motion_to_keypoints

INPUT_SIZE = 256  # LivePortrait's crop size; the generator returns twice that
FEATHER = 0.1  # fraction of the crop side over which the pasted face fades into the photo


def feather_mask(size: int, feather: float = FEATHER) -> np.ndarray:
    """float32 [size, size] paste weight: 1 inside, a cosine ramp to 0 over the outer `feather` of each side."""
    ramp = max(1, int(round(feather * size)))
    edge = np.minimum(np.arange(size), np.arange(size)[::-1]) + 0.5  # distance of pixel centres to the border
    profile = np.where(edge < ramp, 0.5 - 0.5 * np.cos(np.pi * edge / ramp), 1.0).astype(np.float32)
    return np.outer(profile, profile)


class LivePortraitRenderer(Renderer):
    """LivePortrait's F, W, G and stitching on the `liveportrait` backend's motion (module docstring).

    `networks` (e.g. random weights in tests) or `path`, the folder of the released files (else
    MODA_LIVEPORTRAIT_PATH). `batch_size` frames go through W and G together; `device` and `dtype` (float16 on a
    GPU halves memory) are the networks'. `stitching=False` skips the stitching correction.
    """

    def __init__(
        self,
        path: str | os.PathLike | None = None,
        networks: RendererNetworks | None = None,
        device: str = "cpu",
        dtype: torch.dtype | str = torch.float32,
        batch_size: int = 8,
        stitching: bool = True,
        feather: float = FEATHER,
    ) -> None:
        if networks is None:
            folder = find_weights("liveportrait_renderer", path, "the liveportrait renderer's `path` option")
            networks = RendererNetworks.from_folder(folder)
        if isinstance(dtype, str):  # from a command line: "float16", "bfloat16", "float32"
            dtype = getattr(torch, dtype, None)
            if not isinstance(dtype, torch.dtype):
                raise ValueError("dtype must name a torch floating dtype: float32, float16 or bfloat16")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.networks = networks.to(device, dtype).eval()
        self.device, self.dtype = torch.device(device), dtype
        self.batch_size = batch_size
        self.stitching = stitching
        self.mask = feather_mask(2 * INPUT_SIZE, feather)

    def render(self, reference: ReferenceFace, driven_motion: np.ndarray) -> Iterator[np.ndarray]:
        if reference.motion_backend != "liveportrait":
            raise ValueError(
                f"LivePortraitRenderer animates motion of the `liveportrait` backend; this reference was "
                f"extracted with {reference.motion_backend!r} (use WarpRenderer for `landmarks`)"
            )
        return self._frames(reference, check_motion(driven_motion))

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(array, dtype=np.float32)).to(self.device, self.dtype)

    @torch.inference_mode()
    def _frames(self, reference: ReferenceFace, driven_motion: np.ndarray) -> Iterator[np.ndarray]:
        nets = self.networks
        crop = reference.crop(INPUT_SIZE)
        f_s = nets.appearance(self._tensor(crop).permute(2, 0, 1)[None] / 255.0)  # [1, 32, 16, 64, 64]
        frame = reference.expression
        kp_s = self._tensor(motion_to_keypoints(reference.motion[None], reference.identity, frame))  # [1, 21, 3]
        height, width = reference.image.shape[:2]
        to_face = reference.crop_matrix(2 * INPUT_SIZE)
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        # Zero outside the crop: those photo pixels keep their values exactly.
        weight = cv2.warpAffine(self.mask, to_face, (width, height), flags=flags, borderValue=0.0)[..., None]
        keep = reference.image.astype(np.float32) * (1.0 - weight)
        for begin in range(0, len(driven_motion), self.batch_size):
            chunk = driven_motion[begin : begin + self.batch_size]
            kp_d = self._tensor(motion_to_keypoints(chunk, reference.identity, frame))  # [B, 21, 3]
            source = kp_s.expand(len(chunk), -1, -1)
            if self.stitching:
                kp_d = stitch(nets.stitching["retarget_shoulder"], source, kp_d)
            warped = nets.warping(f_s.expand(len(chunk), -1, -1, -1, -1), kp_d, source)
            faces = nets.generator(warped).permute(0, 2, 3, 1).float().cpu().numpy() * 255.0  # [B, 512, 512, 3]
            for face in faces:
                pasted = cv2.warpAffine(face, to_face, (width, height), flags=flags, borderValue=(0, 0, 0))
                yield np.clip(np.rint(keep + pasted * weight), 0, 255).astype(np.uint8)
